//! Fan-out, race and workflows over a remote role: the same calls as over a
//! local pool, each running once on some worker's agent, a race's loser
//! cancelled across the wire, and a workflow's steps passing results along.

use serde_json::{Value, json};
use skep_swarm::{CallOptions, RaceCall, Settled};
use skep_testkit::eventually;
use skep_workflow::{RunOptions, StepOutcome, Workflow, run_workflow};

use crate::support::{
    Cli, LIMIT, Nats, Proc, Scratch, TOKEN, echo_worker, orchestrator, parent_of, wait_workers, worker,
};
use crate::{ran, stop_all};

fn raw(value: Value) -> Box<serde_json::value::RawValue> {
    serde_json::value::to_raw_value(&value).expect("params serialize")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_race_and_a_workflow_run_over_a_remote_role() {
    let nats = Nats::start().await;
    let scratch = Scratch::new();
    let config = scratch.worker_config(&[("echo", "min_warm = 2\nmax_agents = 2")]);
    let mut workers: Vec<Proc> =
        (0..2).map(|i| worker(&nats, &config, TOKEN, &scratch.path(&format!("w{i}.log")))).collect();
    let (swarm, heard) = orchestrator(&nats, "[roles.echo]\nremote = true\ntimeout = \"20s\"\n").await;
    wait_workers(heard.workers(), 2).await;

    // Fan-out: results in input order, each item run exactly once.
    let items: Vec<_> = (0..20_i64).map(|i| raw(json!([i]))).collect();
    let settled = swarm.fanout("echo", "echo", items, Some(4), CallOptions::default()).await.expect("fan-out runs");
    let got: Vec<Value> = settled
        .iter()
        .map(|s| match s {
            Settled::Ok(v) => serde_json::from_str(v.get()).expect("JSON"),
            Settled::Error(e) => panic!("a fan-out item failed: {e:?}"),
        })
        .collect();
    assert_eq!(got, (0..20_i64).map(|i| json!([i])).collect::<Vec<_>>());
    let mut seen: Vec<i64> = ran(&scratch.journals(), "echo").iter().filter_map(|e| e["params"][0].as_i64()).collect();
    seen.sort_unstable();
    assert_eq!(seen, (0..20).collect::<Vec<_>>(), "each fan-out item ran once");

    // Race: the fast call wins; the slow one is cancelled at its agent, over NATS.
    let calls = vec![
        RaceCall { role: "echo".into(), method: "sleep".into(), params: Some(raw(json!({"ms": 3000}))) },
        RaceCall { role: "echo".into(), method: "echo".into(), params: Some(raw(json!(["fast"]))) },
    ];
    let win = swarm.race(calls, CallOptions::default()).await.expect("the race has a winner");
    assert_eq!((win.index, win.result.get()), (1, r#"["fast"]"#));
    let cancelled = || !ran(&scratch.journals(), "$/cancelRequest").is_empty();
    eventually("the race loser's $/cancelRequest at its agent", LIMIT, cancelled).await;

    // A workflow of two steps on the remote role, the second fed by the first's result.
    let text = "[[steps]]\nid = \"a\"\nrole = \"echo\"\nmethod = \"echo\"\nparams = { word = \"remote\" }\n\n\
                [[steps]]\nid = \"b\"\nneeds = [\"a\"]\nrole = \"echo\"\nmethod = \"echo\"\n\
                params = { prev = \"${steps.a.result.word}\" }\n";
    let dir = scratch.path("wf");
    std::fs::create_dir_all(&dir).expect("workflow dir");
    let workflow = Workflow::parse(text, "wf.toml", &dir, &swarm.config()).unwrap_or_else(|e| panic!("{e}"));
    let options = RunOptions { save: false, use_cache: false, ..RunOptions::default() };
    let record = run_workflow(&swarm, &workflow, options, |_| {}).await.expect("the workflow runs");
    assert!(record.ok, "{record:?}");
    assert!(record.steps.iter().all(|s| s.outcome == StepOutcome::Ok), "{record:?}");
    let echoed: Vec<Value> = ran(&scratch.journals(), "echo").into_iter().map(|e| e["params"].clone()).collect();
    assert!(echoed.contains(&json!({"word": "remote"})), "step a ran on an agent: {echoed:?}");
    assert!(echoed.contains(&json!({"prev": "remote"})), "step b got a's result: {echoed:?}");

    stop_all(&mut workers, &scratch).await;
    swarm.shutdown().await;
}

/// `skep run --no-daemon` starts a swarm of its own for the run: that swarm
/// joins the config's cluster too, so a step of a remote role runs on a
/// worker's agent (before, it failed with "no cluster connection").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skep_run_without_a_daemon_runs_a_remote_step_on_a_worker() {
    let nats = Nats::start().await;
    let scratch = Scratch::new();
    let mut only = echo_worker(&nats, &scratch).await;
    let cli = Cli::new(&scratch, &nats, "[roles.echo]\nremote = true\n");
    let workflow = scratch.path("flow.toml");
    let text = "name = \"remote\"\n[[steps]]\nid = \"there\"\nrole = \"echo\"\nmethod = \"echo\"\nparams = [\"run here, served there\"]\n";
    std::fs::write(&workflow, text).expect("workflow written");
    let path = workflow.to_str().expect("UTF-8 path");
    cli.run(&["run", path, "--no-daemon", "--no-cache"]).await;
    let journals = scratch.journals();
    let ran = ran(&journals, "echo");
    assert_eq!(ran.len(), 1, "the step ran once, on a worker's agent: {journals:?}");
    assert_eq!(ran[0]["params"], json!(["run here, served there"]));
    let (agent, _) = journals.iter().find(|(_, lines)| lines.iter().any(|l| l["method"] == "echo")).expect("an agent");
    assert_eq!(parent_of(*agent), Some(only.pid()), "the agent that ran the step is the worker's child");
    stop_all(std::slice::from_mut(&mut only), &scratch).await;
}
