//! `skep demo`: the newcomer's first command. The same `echo` call through
//! warm agents, then through a fresh agent process per call, side by side.

use std::future::Future;
use std::process::{ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use serde_json::value::RawValue;
use skep_bridge::{Client, ClientConfig, RequestOptions};
use skep_swarm::{CallOptions, DEMO_ROLE, Swarm, demo_config};
use tokio::process::Command;
use tokio::task::JoinSet;

use crate::agent::demo_agent_command;
use crate::output::emit;
use crate::progress::Progress;
use crate::runtime::runtime;

/// Time warm agents against a fresh process per call, with the built-in demo role.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  skep demo
  skep demo --calls 100000 --agents 4 --cold-calls 50")]
pub struct DemoArgs {
    /// Calls through the warm agents.
    #[arg(long, value_name = "N", default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub calls: u64,
    /// Warm agents; both paths keep this many calls in flight.
    #[arg(long, value_name = "N", default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=256))]
    pub agents: u64,
    /// Calls that each start a fresh agent process.
    #[arg(long, value_name = "N", default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..))]
    pub cold_calls: u64,
}

/// What every call sends; `echo` must send it back unchanged.
const PARAMS: &str = r#"{"hello":"skep"}"#;
/// An agent answers and exits within milliseconds; this only bounds a broken one.
const COLD_EXIT_LIMIT: Duration = Duration::from_secs(10);

/// Runs both paths and prints the table.
pub fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(demo(args))?;
    Ok(ExitCode::SUCCESS)
}

async fn demo(args: DemoArgs) -> anyhow::Result<()> {
    let (agents, calls, cold_calls) = (args.agents as usize, args.calls as usize, args.cold_calls as usize);
    let command = demo_agent_command()?;
    let mut config = demo_config(command.clone());
    let role = config.roles.get_mut(DEMO_ROLE).expect("demo_config declares the demo role");
    (role.min_warm, role.max_agents) = (agents, agents);
    tracing::info!(agents, "starting the demo agents");
    let swarm = Swarm::start(config).await.context("cannot start the demo agents")?;
    let pool = swarm.clone();
    // Both paths keep `agents` calls in flight, one per agent (a role's default
    // concurrency), so their latencies compare like for like. More in flight
    // only queues: measured on 2 cores, 4 per agent raised p50 from ~150 µs to
    // ~1 ms (waiting in the pool) or ~300 µs (waiting inside the agents).
    let warm = measure("warm", calls, agents, move || {
        let swarm = pool.clone();
        async move { warm_call(&swarm).await }
    })
    .await;
    // Before the cold path, so that it runs alone on the machine, and on
    // failure too, so that no agent outlives the demo.
    swarm.shutdown().await;
    let warm = warm?;
    let command: Arc<[String]> = command.into();
    let cold = measure("cold", cold_calls, agents, move || cold_call(Arc::clone(&command))).await?;
    for line in table(agents, &warm, &cold) {
        emit(&line)?;
    }
    Ok(())
}

/// One call through the warm pool.
async fn warm_call(swarm: &Swarm) -> anyhow::Result<()> {
    let params = RawValue::from_string(PARAMS.to_owned()).expect("PARAMS is JSON");
    let result = swarm.call(DEMO_ROLE, "echo", Some(&params), CallOptions::default()).await?;
    ensure!(result.get() == PARAMS, "echo answered {} to {PARAMS}", result.get());
    Ok(())
}

/// One call the way tools without a pool make it: start the agent, call,
/// close its input, wait for it to exit. All of it is the call's cost.
async fn cold_call(command: Arc<[String]>) -> anyhow::Result<()> {
    let mut agent = Command::new(&command[0])
        .args(&command[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("cannot start a demo agent")?;
    let stdin = agent.stdin.take().expect("stdin was set to piped");
    let stdout = agent.stdout.take().expect("stdout was set to piped");
    let client = Client::connect(stdout, stdin, ClientConfig::default());
    let params = RawValue::from_string(PARAMS.to_owned()).expect("PARAMS is JSON");
    let result = client.call_raw("echo", Some(&params), RequestOptions::default()).await?;
    ensure!(result.get() == PARAMS, "echo answered {} to {PARAMS}", result.get());
    drop(client);
    let status = tokio::time::timeout(COLD_EXIT_LIMIT, agent.wait())
        .await
        .context("a demo agent did not exit after its input closed")?
        .context("cannot wait for a demo agent")?;
    ensure!(status.success(), "a demo agent exited with {status}");
    Ok(())
}

/// What one path did: how many calls, in how long, and each call's latency, sorted.
#[derive(Debug)]
struct Run {
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl Run {
    fn per_second(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64()
    }

    /// The latency below which a fraction `p` of the calls fall (nearest rank).
    fn percentile(&self, p: f64) -> Duration {
        let rank = (p * self.latencies.len() as f64).ceil() as usize;
        self.latencies[rank.clamp(1, self.latencies.len()) - 1]
    }
}

/// Makes `calls` calls with `in_flight` of them running at once, timing each.
async fn measure<F, Fut>(label: &'static str, calls: usize, in_flight: usize, call: F) -> anyhow::Result<Run>
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send,
{
    let progress = Progress::start(label, calls);
    let next = Arc::new(AtomicUsize::new(0));
    let mut callers = JoinSet::new();
    let started = Instant::now();
    for _ in 0..in_flight.min(calls) {
        let (call, next, done) = (call.clone(), Arc::clone(&next), progress.counter());
        callers.spawn(async move {
            let mut latencies = Vec::with_capacity(calls / in_flight + 1);
            while next.fetch_add(1, Ordering::Relaxed) < calls {
                let start = Instant::now();
                call().await?;
                latencies.push(start.elapsed());
                done.fetch_add(1, Ordering::Relaxed);
            }
            anyhow::Ok(latencies)
        });
    }
    drop(call);
    let mut latencies = Vec::with_capacity(calls);
    while let Some(joined) = callers.join_next().await {
        match joined.context("a caller task failed")? {
            Ok(some) => latencies.extend(some),
            Err(e) => {
                progress.finish().await;
                return Err(e.context(format!("a call on the {label} path failed")));
            }
        }
    }
    let elapsed = started.elapsed();
    progress.finish().await;
    latencies.sort_unstable();
    if latencies.len() != calls {
        bail!("{label} path: {} of {calls} calls were timed", latencies.len());
    }
    Ok(Run { elapsed, latencies })
}

fn table(agents: usize, warm: &Run, cold: &Run) -> Vec<String> {
    let row = |path: &str, calls: &str, rate: &str, p50: &str, p99: &str| {
        format!("{path:<6} {calls:<8} {rate:<11} {p50:<9} {p99}")
    };
    let line = |path: &str, run: &Run| {
        let (p50, p99) = (latency(run.percentile(0.50)), latency(run.percentile(0.99)));
        row(path, &run.latencies.len().to_string(), &format!("{:.0}", run.per_second()), &p50, &p99)
    };
    let per_call = cold.percentile(0.50).as_secs_f64() / warm.percentile(0.50).as_secs_f64().max(1e-9);
    let throughput = warm.per_second() / cold.per_second();
    vec![
        format!("skep demo: {agents} warm agents vs a fresh process per call"),
        row("path", "calls", "calls/s", "p50", "p99"),
        line("warm", warm),
        line("cold", cold),
        format!("warm is {} faster per call (p50), {} in throughput", times(per_call), times(throughput)),
    ]
}

/// `45 µs`, `24.1 ms`, `1.25 s`.
fn latency(d: Duration) -> String {
    match d.as_micros() {
        us if us < 1_000 => format!("{us} µs"),
        us if us < 1_000_000 => format!("{:.1} ms", us as f64 / 1e3),
        _ => format!("{:.2} s", d.as_secs_f64()),
    }
}

/// `395x`, or `2.5x` when a decimal still says something.
fn times(ratio: f64) -> String {
    if ratio < 10.0 { format!("{ratio:.1}x") } else { format!("{ratio:.0}x") }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(micros: &[u64]) -> Run {
        Run { elapsed: Duration::from_secs(1), latencies: micros.iter().map(|&us| Duration::from_micros(us)).collect() }
    }

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let hundred = run(&(1..=100).collect::<Vec<_>>());
        assert_eq!(hundred.percentile(0.50), Duration::from_micros(50));
        assert_eq!(hundred.percentile(0.99), Duration::from_micros(99));
        assert_eq!(run(&[7]).percentile(0.99), Duration::from_micros(7));
    }

    #[test]
    fn latencies_and_ratios_read_at_a_glance() {
        assert_eq!(latency(Duration::from_micros(45)), "45 µs");
        assert_eq!(latency(Duration::from_micros(24_140)), "24.1 ms");
        assert_eq!(latency(Duration::from_millis(1_250)), "1.25 s");
        assert_eq!((times(395.4), times(2.46)), ("395x".to_owned(), "2.5x".to_owned()));
    }

    #[test]
    fn the_table_lines_up_under_its_header() {
        let lines = table(8, &run(&[45, 210]), &run(&[24_100, 40_200]));
        assert_eq!(lines[1], "path   calls    calls/s     p50       p99");
        assert_eq!(lines[2], "warm   2        2           45 µs     210 µs");
        assert_eq!(lines[4], "warm is 536x faster per call (p50), 1.0x in throughput");
    }
}
