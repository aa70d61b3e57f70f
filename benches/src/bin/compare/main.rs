//! The side-by-side runner: skep against what users would pick instead, each
//! scenario run for every contender alternately (A B A B …) in one run so a
//! noisy machine cannot fake a ratio. Prints a markdown table.
//!
//!     cargo run --release -p skep-benches --bin compare -- [--quick] [--only N] [--out FILE]
//!
//! `docs/benchmarks.md` explains every scenario and holds the figures.

mod bridge;
mod fanout;
mod node;
mod python;
mod runner;
mod seed;
mod setup;
mod start;

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;
use skep_benches::summary;

/// Command-line options.
#[derive(Debug, Parser)]
#[command(about = "skep side by side with its peers; prints a markdown table")]
struct Args {
    /// A smoke check (about a minute): fewer rounds and samples, shorter work.
    #[arg(long)]
    quick: bool,
    /// Run only these scenarios (1-6); repeatable.
    #[arg(long)]
    only: Vec<u8>,
    /// Also write the table (with the machine's description) to this file.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Do not build or install anything (CI has just done it).
    #[arg(long)]
    no_setup: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let env = if args.no_setup { setup::Env::locate()? } else { setup::Env::prepare()? };
    let plan = runner::Plan { quick: args.quick };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting a tokio runtime")?;
    let wanted = |n: u8| args.only.is_empty() || args.only.contains(&n);
    let started = std::time::Instant::now();
    let mut scenarios = Vec::new();
    for (n, run) in [
        (1, bridge::scenario as runner::ScenarioFn),
        (2, python::scenario),
        (3, fanout::scenario),
        (4, seed::scenario),
        (5, start::scenario),
        (6, node::scenario),
    ] {
        if wanted(n) {
            eprintln!("== scenario {n}");
            scenarios.push(rt.block_on(run(&env, plan)).with_context(|| format!("scenario {n}"))?);
        }
    }
    let header = format!(
        "{}\n\nCommand: `cargo run --release -p skep-benches --bin compare --{}`; took {:.0} s.\n\n",
        setup::machine(),
        if args.quick { " --quick" } else { "" },
        started.elapsed().as_secs_f64()
    );
    let table = summary::render(&scenarios);
    let mut stdout = std::io::stdout().lock();
    write!(stdout, "{header}{table}").context("writing the table to stdout")?;
    if let Some(path) = args.out {
        std::fs::write(&path, format!("{header}{table}")).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
