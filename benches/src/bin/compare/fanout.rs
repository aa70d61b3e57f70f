//! Scenario 3: 1,000 small tasks over 8 workers. skep fans them out to 8
//! warm agents of `peers/task.py --agent`; GNU parallel and `xargs -P 8` run
//! `peers/task.py` once per task, as they must.

use std::process::Stdio;
use std::time::Instant;

use anyhow::Context as _;
use skep_benches::summary::{Metric, Scenario, Side, Unit};
use skep_bridge::Framing;
use tokio::io::AsyncWriteExt as _;
use tokio::process::Command;

use crate::runner::{self, Contender, Fut, Outcome, Plan, since, spawn, toml_str};
use crate::setup::Env;

/// Workers on every side.
const WORKERS: usize = 8;

/// Scenario 3's entry point.
pub fn scenario(env: &Env, plan: Plan) -> Fut<'_, anyhow::Result<Scenario>> {
    Box::pin(async move {
        let tasks = plan.pick(1000, 100);
        let inputs: Vec<String> = (0..tasks).map(|i| format!("task-{i}")).collect();
        let python = env.python.display().to_string();
        let task = env.peer("task.py");
        let config = env.scratch_file(
            "task-role.toml",
            &format!(
                "[roles.task]\ncommand = [{}, {}, \"--agent\"]\nmin_warm = {WORKERS}\nmax_agents = {WORKERS}\n",
                toml_str(&python),
                toml_str(&task)
            ),
        )?;
        let config = config.display().to_string();
        let fanout = serde_json::json!({
            "role": "task",
            "method": "count",
            "params": inputs.iter().map(|t| serde_json::json!({"text": t})).collect::<Vec<_>>(),
            "maxParallel": WORKERS,
        })
        .to_string();
        let lines = inputs.join("\n") + "\n";
        let metrics = vec![Metric { key: "all", label: "all tasks done", unit: Unit::Nanos, share_of_work: false }];
        let label = |what: &str| format!("{what} ({tasks} tasks)");
        let contenders = vec![
            Contender::new(&label("skep serve: swarm/fanout over 8 warm agents"), Side::Skep, {
                let (config, fanout) = (config.clone(), fanout.clone());
                move || Box::pin(skep_round(env, config.clone(), fanout.clone(), tasks, false))
            }),
            Contender::new(&label("skep serve, cold: start, 8 agents, then the fan-out"), Side::Skep, {
                let (config, fanout) = (config.clone(), fanout.clone());
                move || Box::pin(skep_round(env, config.clone(), fanout.clone(), tasks, true))
            }),
            Contender::new(&label("GNU parallel -j 8, a process per task"), Side::Peer, {
                let argv = ["parallel", "--will-cite", "-j", "8", &python, &task, "{}"].join("\u{0}");
                let lines = lines.clone();
                move || Box::pin(spawner_round(argv.clone(), lines.clone(), tasks))
            }),
            Contender::new(&label("xargs -P 8, a process per task"), Side::Peer, {
                let argv = ["xargs", "-P", "8", "-n", "1", &python, &task].join("\u{0}");
                let lines = lines.clone();
                move || Box::pin(spawner_round(argv.clone(), lines.clone(), tasks))
            }),
        ];
        runner::run("3 fan-out", metrics, contenders, plan.pick(3, 2)).await
    })
}

/// Warm: three fan-outs timed after one untimed; cold: one, timed from the sidecar's spawn.
async fn skep_round(env: &Env, config: String, fanout: String, tasks: usize, cold: bool) -> anyhow::Result<Outcome> {
    let start = Instant::now();
    let mut child = spawn(&env.exe("skep"), &["serve", "--config", &config])?;
    let client = runner::client(&mut child, Framing::Newline)?;
    let mut samples = Vec::new();
    for i in 0..if cold { 1 } else { 4 } {
        let start = if cold { start } else { Instant::now() };
        let reply = runner::call(&client, "swarm/fanout", &fanout).await?;
        let elapsed = since(start);
        let results: Vec<serde_json::Value> = serde_json::from_str(reply.get())?;
        let ok = results.iter().filter(|r| r.get("ok") == Some(&serde_json::json!(1))).count();
        anyhow::ensure!(
            ok == tasks,
            "{ok} of {tasks} tasks answered 1: {}",
            &reply.get()[..200.min(reply.get().len())]
        );
        if cold || i > 0 {
            samples.push(elapsed);
        }
    }
    runner::finish(child, client).await?;
    Ok(Outcome::one("all", samples))
}

/// One run of a spawner (argv joined by NULs) fed one task per line; checks every task printed 1.
async fn spawner_round(argv: String, lines: String, tasks: usize) -> anyhow::Result<Outcome> {
    let argv: Vec<&str> = argv.split('\u{0}').collect();
    let start = Instant::now();
    let mut child = Command::new(argv[0])
        .args(&argv[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {argv:?}"))?;
    let mut stdin = child.stdin.take().context("stdin is piped")?;
    let feed = async move {
        stdin.write_all(lines.as_bytes()).await?;
        drop(stdin);
        std::io::Result::Ok(())
    };
    let (fed, out) = tokio::join!(feed, child.wait_with_output());
    let elapsed = since(start);
    fed?;
    let out = out?;
    anyhow::ensure!(out.status.success(), "{argv:?} failed: {}", out.status);
    let ones = out.stdout.split(|&b| b == b'\n').filter(|l| *l == b"1").count();
    anyhow::ensure!(ones == tasks, "{argv:?}: {ones} of {tasks} tasks printed 1");
    Ok(Outcome::one("all", vec![elapsed]))
}
