//! Scenario 4, the seed workflow: 5 steps, each 1 s of "AI" work (a sleep in
//! `peers/heavy_agent.py`, whose start-up pays real imports plus a fixed
//! 300 ms init). The steps form a DAG: 1 → {2, 3, 4} → 5, so the critical
//! path is 3 steps of work.
//!
//! skep runs it three ways: as a workflow file with `skep run --no-daemon`
//! (which starts its agents once, then schedules the DAG), with `skep run`
//! on the config's warm daemon (docs/daemon.md: started once, before the
//! rounds), and through a warm sidecar (five `swarm/call`s one after another,
//! or along the DAG with 2–4 concurrent), which shows the cost per step once
//! agents are warm.

use std::os::unix::fs::DirBuilderExt;
use std::time::{Duration, Instant};

use skep_benches::summary::{Metric, Scenario, Side, Unit};
use skep_bridge::Framing;

use crate::python::heavy_config;
use crate::runner::{self, Contender, Fut, Outcome, Plan, since, spawn};
use crate::setup::Env;

/// How the steps are run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// Warm sidecar, steps one after another.
    Sequential,
    /// Warm sidecar, steps 2–4 at once.
    Dag,
    /// Sidecar and agent start timed too, steps one after another.
    Cold,
}

/// The seed workflow as a workflow file for `skep run` (docs/workflows.md).
fn workflow_file(work: Duration) -> String {
    let ms = work.as_millis();
    let step = |id: &str, needs: &str| {
        format!(
            "[[steps]]\nid = \"{id}\"\nneeds = [{needs}]\nrole = \"heavy\"\nmethod = \"work\"\nparams = {{ ms = {ms} }}\n"
        )
    };
    let steps = [
        step("plan", ""),
        step("code", "\"plan\""),
        step("tests", "\"plan\""),
        step("docs", "\"plan\""),
        step("summary", "\"code\", \"tests\", \"docs\""),
    ];
    format!("name = \"seed\"\n{}", steps.concat())
}

/// Scenario 4's entry point.
pub fn scenario(env: &Env, plan: Plan) -> Fut<'_, anyhow::Result<Scenario>> {
    Box::pin(async move {
        let work = Duration::from_millis(plan.pick(1000, 100));
        let warm3 = heavy_config(env, 3)?;
        let cold1 = heavy_config(env, 1)?;
        let metrics = vec![
            Metric { key: "total", label: "workflow, 5 steps", unit: Unit::Nanos, share_of_work: false },
            Metric { key: "overhead", label: "overhead above the work", unit: Unit::Nanos, share_of_work: true },
        ];
        let skep = |name: &str, config: &str, shape: Shape, ideal: Duration| {
            let config = config.to_owned();
            Contender::new(name, Side::Skep, move || Box::pin(skep_round(env, config.clone(), shape, work, ideal)))
                .work(ideal)
        };
        let flow = env.scratch_file("seed.toml", &workflow_file(work))?.display().to_string();
        let run = {
            let (flow, config) = (flow.clone(), warm3.clone());
            Contender::new("skep run: starts 3 agents, then the DAG", Side::Skep, move || {
                Box::pin(workflow_round(env, flow.clone(), config.clone(), work * 3))
            })
            .work(work * 3)
        };
        let daemon = daemon_config(env, &warm3)?;
        let on_daemon = {
            let (flow, config) = (flow.clone(), daemon.clone());
            start_daemon(env, &config).await?;
            Contender::new("skep run on a warm daemon (skep up once)", Side::Skep, move || {
                Box::pin(daemon_round(env, flow.clone(), config.clone(), work * 3))
            })
            .work(work * 3)
        };
        let contenders = vec![
            run,
            on_daemon,
            skep("skep warm, steps 2–4 in parallel (DAG)", &warm3, Shape::Dag, work * 3),
            skep("skep warm, steps one after another", &warm3, Shape::Sequential, work * 5),
            skep("skep cold: start + init once, then 5 steps", &cold1, Shape::Cold, work * 5),
            Contender::new("a new process per step (the seed workflow)", Side::Peer, move || {
                Box::pin(process_round(env, work))
            })
            .work(work * 5),
        ];
        let scenario = runner::run("4 seed workflow", metrics, contenders, plan.pick(3, 2)).await;
        // Nothing is left running: the idle exit is only the backstop.
        let _ = daemon_skep(env)?.args(["down", "--config", &daemon]).output().await;
        scenario
    })
}

fn step(work: Duration) -> String {
    format!("{{\"role\":\"heavy\",\"method\":\"work\",\"params\":{{\"ms\":{}}}}}", work.as_millis())
}

fn outcome(total: u64, ideal: Duration) -> Outcome {
    let overhead = total.saturating_sub(ideal.as_nanos() as u64);
    Outcome::Samples([("total".to_owned(), vec![total]), ("overhead".to_owned(), vec![overhead])].into())
}

async fn skep_round(
    env: &Env,
    config: String,
    shape: Shape,
    work: Duration,
    ideal: Duration,
) -> anyhow::Result<Outcome> {
    let start = Instant::now();
    let mut child = spawn(&env.exe("skep"), &["serve", "--config", &config])?;
    let client = runner::client(&mut child, Framing::Newline)?;
    let call = step(work);
    if shape != Shape::Cold {
        // Warm: the agents are up; let all three answer once before timing.
        let warm = step(Duration::ZERO);
        futures::future::try_join_all((0..3).map(|_| runner::call(&client, "swarm/call", &warm))).await?;
    }
    let start = if shape == Shape::Cold { start } else { Instant::now() };
    match shape {
        Shape::Sequential | Shape::Cold => {
            for _ in 0..5 {
                runner::call(&client, "swarm/call", &call).await?;
            }
        }
        Shape::Dag => {
            runner::call(&client, "swarm/call", &call).await?;
            futures::future::try_join_all((0..3).map(|_| runner::call(&client, "swarm/call", &call))).await?;
            runner::call(&client, "swarm/call", &call).await?;
        }
    }
    let total = since(start);
    runner::finish(child, client).await?;
    Ok(outcome(total, ideal))
}

/// One `skep run --no-daemon` of the workflow file, from its start to its exit.
async fn workflow_round(env: &Env, flow: String, config: String, ideal: Duration) -> anyhow::Result<Outcome> {
    let start = Instant::now();
    let output = tokio::process::Command::new(env.exe("skep"))
        .args(["run", &flow, "--config", &config, "--no-cache", "--jobs", "3", "--no-daemon"])
        .stdin(std::process::Stdio::null())
        .output()
        .await?;
    let total = since(start);
    anyhow::ensure!(
        output.status.success(),
        "skep run {flow} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(outcome(total, ideal))
}

/// The warm config plus a short idle exit, so the daemon the scenario
/// starts leaves by itself even if the scenario could not stop it.
fn daemon_config(env: &Env, warm: &str) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(warm)? + "[daemon]\nidle_exit = \"2m\"\n";
    Ok(env.scratch_file("heavy-daemon.toml", &text)?.display().to_string())
}

/// `skep`, with the daemon's runtime and state directories inside the scratch directory.
fn daemon_skep(env: &Env) -> anyhow::Result<tokio::process::Command> {
    let run = env.scratch.join("daemon-run");
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&run)?;
    let mut command = tokio::process::Command::new(env.exe("skep"));
    command
        .env("XDG_RUNTIME_DIR", &run)
        .env("XDG_STATE_HOME", env.scratch.join("daemon-state"))
        .env_remove("SKEP_NO_DAEMON")
        .stdin(std::process::Stdio::null());
    Ok(command)
}

/// `skep up`: the daemon and its warm agents, before any round is timed.
async fn start_daemon(env: &Env, config: &str) -> anyhow::Result<()> {
    let output = daemon_skep(env)?.args(["up", "--config", config]).output().await?;
    anyhow::ensure!(output.status.success(), "skep up failed: {}", String::from_utf8_lossy(&output.stderr));
    Ok(())
}

/// One `skep run` on the warm daemon, from its start to its exit.
async fn daemon_round(env: &Env, flow: String, config: String, ideal: Duration) -> anyhow::Result<Outcome> {
    let start = Instant::now();
    let output =
        daemon_skep(env)?.args(["run", &flow, "--config", &config, "--no-cache", "--jobs", "3"]).output().await?;
    let total = since(start);
    anyhow::ensure!(
        output.status.success(),
        "skep run {flow} on the daemon failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(outcome(total, ideal))
}

/// Each step starts its own agent, makes its one call, and lets it exit.
async fn process_round(env: &Env, work: Duration) -> anyhow::Result<Outcome> {
    let python = env.python.display().to_string();
    let agent = env.peer("heavy_agent.py");
    let params = format!("{{\"ms\":{}}}", work.as_millis());
    let start = Instant::now();
    for _ in 0..5 {
        let mut child = spawn(&python, &[&agent])?;
        let client = runner::client(&mut child, Framing::Newline)?;
        runner::call(&client, "work", &params).await?;
        runner::finish(child, client).await?;
    }
    Ok(outcome(since(start), work * 5))
}
