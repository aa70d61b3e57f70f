//! Scenario 5: a sidecar's start to its first answered call, and its idle
//! RSS right after: `skep serve` (with no agent to wait for, and with its
//! built-in demo role of 2 warm agents) against a minimal vscode-jsonrpc Node
//! server (`peers/vscode_server.js`).

use std::time::Instant;

use anyhow::Context as _;
use skep_benches::summary::{Metric, Scenario, Side, Unit};
use skep_bridge::Framing;

use crate::runner::{self, Contender, Fut, Outcome, Plan, since, spawn, toml_str};
use crate::setup::Env;

/// Scenario 5's entry point.
pub fn scenario(env: &Env, plan: Plan) -> Fut<'_, anyhow::Result<Scenario>> {
    Box::pin(async move {
        let starts = plan.pick(5, 2);
        // A role with nothing warm: `initialize` is answered by the sidecar alone.
        let empty = env.scratch_file(
            "cold-role.toml",
            &format!("[roles.echo]\ncommand = [{}]\nmin_warm = 0\n", toml_str(&env.exe("bridge-echo"))),
        )?;
        let empty = empty.display().to_string();
        let skep = env.exe("skep");
        let node_server = env.peer("vscode_server.js");
        let metrics = vec![
            Metric { key: "start", label: "start to first answer", unit: Unit::Nanos, share_of_work: false },
            Metric { key: "rss", label: "idle RSS after it", unit: Unit::KiB, share_of_work: false },
        ];
        let contender = |name: &str, side, argv: Vec<String>, framing, method: &'static str, params: &'static str| {
            Contender::new(name, side, move || {
                let argv = argv.clone();
                Box::pin(async move { starts_round(&argv, framing, method, params, starts).await })
            })
        };
        let contenders = vec![
            contender(
                "skep serve, no warm agents: `initialize`",
                Side::Skep,
                vec![skep.clone(), "serve".into(), "--config".into(), empty],
                Framing::Newline,
                "initialize",
                "{}",
            ),
            contender(
                "skep serve, demo role (2 warm agents): swarm/call",
                Side::Skep,
                vec![skep, "serve".into()],
                Framing::Newline,
                "swarm/call",
                r#"{"role":"demo","method":"echo","params":[1]}"#,
            ),
            contender(
                "vscode-jsonrpc Node server: `initialize`",
                Side::Peer,
                vec!["node".into(), node_server],
                Framing::ContentLength,
                "initialize",
                "{}",
            ),
        ];
        runner::run("5 sidecar start", metrics, contenders, plan.pick(5, 2)).await
    })
}

async fn starts_round(
    argv: &[String],
    framing: Framing,
    method: &str,
    params: &str,
    starts: usize,
) -> anyhow::Result<Outcome> {
    let args: Vec<&str> = argv[1..].iter().map(String::as_str).collect();
    let (mut times, mut rss) = (Vec::new(), Vec::new());
    for _ in 0..starts {
        let start = Instant::now();
        let mut child = spawn(&argv[0], &args)?;
        let client = runner::client(&mut child, framing)?;
        runner::call(&client, method, params).await?;
        times.push(since(start));
        rss.push(rss_kib(child.id().context("the child is running")?)?);
        runner::finish(child, client).await?;
    }
    Ok(Outcome::Samples([("start".to_owned(), times), ("rss".to_owned(), rss)].into()))
}

/// VmRSS of a process, in KiB.
fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .context("no VmRSS line in /proc/PID/status")
}
