//! Remote roles over a real nats-server (loopback, a token): `skep worker`
//! processes serve a role, an in-process orchestrator calls it remote, and
//! the agents' journals say what ran where and how often (docs/cluster.md).

mod broadcast;
mod capacity;
mod coordinate;
mod spill;
mod support;
mod visible;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::StreamExt;
use serde_json::{Value, json};
use skep_swarm::{BreakerState, SwarmError};
use skep_testkit::{call, eventually, wait_gone};
use support::{LIMIT, Nats, Proc, SKEP, Scratch, TOKEN, echo_worker, orchestrator, parent_of, wait_workers, worker};

/// The journal lines of `method`, over every agent.
pub(crate) fn ran(journals: &BTreeMap<u32, Vec<Value>>, method: &str) -> Vec<Value> {
    journals.values().flatten().filter(|e| e["method"] == method).cloned().collect()
}

/// SIGTERMs every worker, expects a clean exit, and waits for every agent to be gone.
pub(crate) async fn stop_all(workers: &mut [Proc], scratch: &Scratch) {
    for w in workers.iter() {
        w.signal(libc::SIGTERM);
    }
    for w in workers.iter_mut() {
        assert!(w.exited().await.success(), "a worker did not drain cleanly");
    }
    let agents: Vec<u32> = scratch.journals().keys().copied().collect();
    wait_gone(&agents, "the workers' agents").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_share_a_thousand_calls_and_every_result_is_exact() {
    let nats = Nats::start().await;
    let scratch = Scratch::new();
    // Each worker takes 4 calls at once; 4 in flight never overload one (past it: -32004).
    let config = scratch.worker_config(&[("echo", "min_warm = 1\nmax_agents = 4")]);
    let mut workers: Vec<Proc> =
        (0..3).map(|i| worker(&nats, &config, TOKEN, &scratch.path(&format!("w{i}.log")))).collect();
    let (swarm, heard) = orchestrator(&nats, "[roles.echo]\nremote = true\n").await;
    wait_workers(heard.workers(), 3).await;
    // Each heartbeat names its worker's process, host and roles with their capacity.
    let beats = heard.workers().alive();
    let mut pids: Vec<u32> = beats.iter().map(|b| b.pid).collect();
    pids.sort_unstable();
    let mut expected: Vec<u32> = workers.iter().map(Proc::pid).collect();
    expected.sort_unstable();
    assert_eq!(pids, expected);
    for beat in &beats {
        assert!(!beat.host.is_empty() && beat.id == format!("{}-{}", beat.host, beat.pid), "{beat:?}");
        assert_eq!((beat.capacity, beat.draining, beat.interval_ms), (4, false, 1000), "{beat:?}");
        assert_eq!(beat.roles.iter().map(|r| (r.role.as_str(), r.capacity)).collect::<Vec<_>>(), [("echo", 4)]);
    }

    let answers: Vec<(i64, Result<Value, SwarmError>)> = futures::stream::iter(0..1000_i64)
        .map(|i| {
            let swarm = swarm.clone();
            async move { (i, call(&swarm, "echo", "echo", json!([i])).await) }
        })
        .buffer_unordered(4)
        .collect()
        .await;
    for (i, answer) in answers {
        assert_eq!(answer.expect("every call is answered"), json!([i]));
    }
    // Each call ran exactly once, somewhere.
    let journals = scratch.journals();
    let mut seen: Vec<i64> = ran(&journals, "echo").iter().map(|e| e["params"][0].as_i64().expect("n")).collect();
    seen.sort_unstable();
    assert_eq!(seen, (0..1000).collect::<Vec<_>>());
    // And each worker served some of them: an agent's parent is its worker.
    let mut served: BTreeMap<u32, usize> = BTreeMap::new();
    for (agent, lines) in &journals {
        let parent = parent_of(*agent).expect("the agent is alive");
        *served.entry(parent).or_default() += lines.iter().filter(|e| e["method"] == "echo").count();
    }
    for w in &workers {
        assert!(served.get(&w.pid()).is_some_and(|n| *n >= 1), "worker {} served nothing: {served:?}", w.pid());
    }
    stop_all(&mut workers, &scratch).await;
    swarm.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_under_load_loses_no_idempotent_call_and_runs_none_twice() {
    let nats = Nats::start().await;
    let scratch = Scratch::new();
    let pool = "min_warm = 2\nmax_agents = 8";
    let config = scratch.worker_config(&[("idem", pool), ("once", pool)]);
    let mut workers: Vec<Proc> =
        (0..3).map(|i| worker(&nats, &config, TOKEN, &scratch.path(&format!("w{i}.log")))).collect();
    let roles = "[roles.idem]\nremote = true\ntimeout = \"1s\"\nidempotent = [\"sleep\"]\n\
                 [roles.once]\nremote = true\ntimeout = \"1s\"\n";
    let (swarm, heard) = orchestrator(&nats, roles).await;
    wait_workers(heard.workers(), 3).await;
    let victim_agents: BTreeSet<u32> = {
        let journals = scratch.journals();
        journals.keys().copied().filter(|a| parent_of(*a) == Some(workers[0].pid())).collect()
    };
    assert!(!victim_agents.is_empty(), "the first worker's agents are up");

    let done = Arc::new(AtomicUsize::new(0));
    let load = |role: &'static str| {
        let (swarm, done) = (swarm.clone(), Arc::clone(&done));
        tokio::spawn(async move {
            futures::stream::iter(0..200_i64)
                .map(|n| {
                    let (swarm, done) = (swarm.clone(), Arc::clone(&done));
                    async move {
                        let answer = call(&swarm, role, "sleep", json!({"ms": 20, "n": n, "role": role})).await;
                        done.fetch_add(1, Ordering::Relaxed);
                        (n, answer)
                    }
                })
                .buffer_unordered(6)
                .collect::<Vec<_>>()
                .await
        })
    };
    let (idem, once) = (load("idem"), load("once"));
    eventually("a steady load", LIMIT, || done.load(Ordering::Relaxed) >= 60).await;
    workers[0].signal(libc::SIGKILL);
    let idem = idem.await.expect("the idempotent load ran");
    let once = once.await.expect("the other load ran");

    // Every idempotent call succeeded, retried on another worker when its first one died.
    for (n, answer) in &idem {
        assert_eq!(answer.as_ref().unwrap_or_else(|e| panic!("idem {n}: {e}")), &json!({"slept": 20}));
    }
    // A non-idempotent call succeeded, or failed saying it may have run; none ran twice.
    let journals = scratch.journals();
    let mut runs: BTreeMap<i64, usize> = BTreeMap::new();
    for entry in ran(&journals, "sleep").iter().filter(|e| e["params"]["role"] == "once") {
        *runs.entry(entry["params"]["n"].as_i64().expect("n")).or_default() += 1;
    }
    for (n, answer) in &once {
        let times = runs.get(n).copied().unwrap_or(0);
        match answer {
            Ok(result) => {
                assert_eq!(result, &json!({"slept": 20}));
                assert_eq!(times, 1, "once {n} succeeded and ran {times} times");
            }
            Err(e) => {
                let object = e.to_error_object();
                assert_eq!(object.code(), -32001, "once {n}: {e}");
                assert!(e.to_string().contains("may have run"), "{e}");
                let data: Value = serde_json::from_str(object.data().expect("data").get()).expect("JSON");
                assert_eq!(data["mayHaveRun"], true);
                assert!(times <= 1, "once {n} failed and ran {times} times");
            }
        }
    }
    for w in &mut workers[..1] {
        w.exited().await;
    }
    wait_gone(&victim_agents.iter().copied().collect::<Vec<_>>(), "the killed worker's agents").await;
    let stats = swarm.stats().await;
    for role in &stats.roles {
        assert_eq!(role.breaker.state, BreakerState::Closed, "{}: {:?}", role.role, role.breaker);
    }
    stop_all(&mut workers[1..], &scratch).await;
    swarm.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_every_worker_gone_a_call_fails_at_once_and_a_new_worker_is_used() {
    let nats = Nats::start().await;
    let scratch = Scratch::new();
    let config = scratch.worker_config(&[("echo", "")]);
    let mut first = worker(&nats, &config, TOKEN, &scratch.path("w0.log"));
    // A long timeout: an answer other than "no workers" would take 20 s to come.
    let (swarm, heard) = orchestrator(&nats, "[roles.echo]\nremote = true\ntimeout = \"20s\"\n").await;
    wait_workers(heard.workers(), 1).await;
    assert_eq!(call(&swarm, "echo", "echo", json!(["one"])).await.expect("served"), json!(["one"]));
    first.signal(libc::SIGTERM);
    assert!(first.exited().await.success());

    let err = call(&swarm, "echo", "echo", json!(["two"])).await.expect_err("no worker is left");
    assert!(matches!(&err, SwarmError::NoWorkers { role } if role == "echo"), "{err:?}");
    assert_eq!(err.code(), -32003);
    assert!(err.to_string().contains("role echo"), "{err}");

    let mut second = worker(&nats, &config, TOKEN, &scratch.path("w1.log"));
    let again = heard.workers().wait_for(LIMIT, |alive| alive.iter().any(|w| w.pid == second.pid())).await;
    assert!(again, "the new worker's heartbeat");
    assert_eq!(call(&swarm, "echo", "echo", json!(["three"])).await.expect("served again"), json!(["three"]));
    let journals = scratch.journals();
    let by_second: Vec<u32> = journals.keys().copied().filter(|a| parent_of(*a) == Some(second.pid())).collect();
    assert_eq!(ran(&journals, "echo").len(), 2, "the failed call ran nowhere");
    assert!(by_second.iter().any(|a| journals[a].iter().any(|e| e["params"] == json!(["three"]))));
    stop_all(std::slice::from_mut(&mut second), &scratch).await;
    swarm.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_drained_by_sigterm_finishes_its_calls_in_flight() {
    let nats = Nats::start().await;
    let scratch = Scratch::new();
    let config = scratch.worker_config(&[("slow", "min_warm = 4\nmax_agents = 4")]);
    let mut only = worker(&nats, &config, TOKEN, &scratch.path("w0.log"));
    let (swarm, heard) = orchestrator(&nats, "[roles.slow]\nremote = true\ntimeout = \"20s\"\n").await;
    wait_workers(heard.workers(), 1).await;
    let calls: Vec<_> = (0..4)
        .map(|n| {
            let swarm = swarm.clone();
            tokio::spawn(async move { call(&swarm, "slow", "sleep", json!({"ms": 700, "n": n})).await })
        })
        .collect();
    // Every call has reached an agent before the worker is told to stop.
    eventually("four calls running", LIMIT, || ran(&scratch.journals(), "sleep").len() == 4).await;
    only.signal(libc::SIGTERM);
    for call in calls {
        assert_eq!(call.await.expect("joined").expect("finished despite the drain"), json!({"slept": 700}));
    }
    assert!(only.exited().await.success());
    let agents: Vec<u32> = scratch.journals().keys().copied().collect();
    wait_gone(&agents, "the drained worker's agents").await;
    swarm.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_call_that_times_out_is_cancelled_at_its_agent() {
    let nats = Nats::start().await;
    let scratch = Scratch::new();
    let config = scratch.worker_config(&[("slow", "min_warm = 1\nmax_agents = 1")]);
    let mut only = worker(&nats, &config, TOKEN, &scratch.path("w0.log"));
    let (swarm, heard) = orchestrator(&nats, "[roles.slow]\nremote = true\ntimeout = \"300ms\"\n").await;
    wait_workers(heard.workers(), 1).await;
    let err = call(&swarm, "slow", "sleep", json!({"ms": 2000})).await.expect_err("it times out");
    assert!(matches!(&err, SwarmError::RemoteLost { role, .. } if role == "slow"), "{err:?}");
    // The agent reads the cancellation once its sleep ends; it was not killed for it.
    let cancelled = || {
        let journals = scratch.journals();
        journals.len() == 1 && !ran(&journals, "$/cancelRequest").is_empty()
    };
    eventually("the agent's $/cancelRequest", LIMIT, cancelled).await;
    let agent = *scratch.journals().keys().next().expect("one agent");
    let swarm_timeout =
        skep_swarm::CallOptions { timeout: Some(std::time::Duration::from_secs(20)), ..Default::default() };
    let params = serde_json::value::to_raw_value(&json!([])).expect("params");
    let pid = swarm.call("slow", "pid", Some(&params), swarm_timeout).await.expect("the same agent answers");
    assert_eq!(pid.get(), agent.to_string());
    stop_all(std::slice::from_mut(&mut only), &scratch).await;
    swarm.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_token_is_refused_loudly_by_the_worker_and_the_orchestrator() {
    let nats = Nats::start().await;
    let scratch = Scratch::new();
    let config = scratch.worker_config(&[("echo", "")]);
    let log = scratch.path("w0.log");
    let mut refused = worker(&nats, &config, "not-the-token", &log);
    let status = refused.exited().await;
    assert_eq!(status.code(), Some(1), "{status:?}");
    let said = std::fs::read_to_string(&log).expect("the worker's log");
    assert!(said.contains("refused our credentials"), "{said}");
    assert!(!said.contains("not-the-token"), "the token was logged: {said}");
    assert!(scratch.journals().is_empty(), "no agent starts for a worker that cannot serve");

    // The orchestrator side: `skep serve` with a remote role and the wrong token in its file.
    let orchestrator = scratch.path("orchestrator.toml");
    let text = format!("[cluster]\nnats = {:?}\ntoken = \"not-the-token\"\n[roles.echo]\nremote = true\n", nats.url);
    std::fs::write(&orchestrator, text).expect("config written");
    let child = std::process::Command::new(SKEP)
        .args(["serve", "--config"])
        .arg(&orchestrator)
        .env_remove("SKEP_NATS_TOKEN")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(scratch.path("serve.log")).expect("log"))
        .spawn()
        .expect("skep serve starts");
    let mut serve = Proc { child };
    assert_eq!(serve.exited().await.code(), Some(1));
    let said = std::fs::read_to_string(scratch.path("serve.log")).expect("serve's log");
    assert!(said.contains("refused our credentials"), "{said}");
    assert!(!said.contains("not-the-token"), "the token was logged: {said}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_taken_by_a_worker_that_dies_fails_at_its_missed_heartbeats_not_at_its_timeout() {
    let nats = Nats::start().await;
    let scratch = Scratch::new();
    let config = scratch.worker_config_in("heartbeat = \"100ms\"", &[("slow", "min_warm = 1\nmax_agents = 1")]);
    let mut doomed = worker(&nats, &config, TOKEN, &scratch.path("w0.log"));
    let (swarm, heard) = orchestrator(&nats, "[roles.slow]\nremote = true\ntimeout = \"25s\"\n").await;
    wait_workers(heard.workers(), 1).await;
    let running = {
        let swarm = swarm.clone();
        tokio::spawn(async move { call(&swarm, "slow", "sleep", json!({"ms": 20_000})).await })
    };
    eventually("the call reached the agent", LIMIT, || ran(&scratch.journals(), "sleep").len() == 1).await;
    doomed.signal(libc::SIGKILL);
    doomed.exited().await;
    // Not the timeout's error (25 s away): the heartbeats' (a few 100 ms away).
    let err = running.await.expect("joined").expect_err("its worker died");
    match &err {
        SwarmError::RemoteLost { role, reason, .. } => {
            assert_eq!(role, "slow");
            assert!(reason.contains("missed its heartbeats"), "{reason}");
        }
        other => panic!("expected RemoteLost, got {other:?}"),
    }
    let agents: Vec<u32> = scratch.journals().keys().copied().collect();
    wait_gone(&agents, "the dead worker's agents").await;
    swarm.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skep_call_through_the_shared_daemon_reaches_a_remote_role() {
    let nats = Nats::start().await;
    let scratch = Scratch::new();
    let mut only = echo_worker(&nats, &scratch).await;
    let orchestrator = scratch.path("skep.toml");
    std::fs::write(&orchestrator, format!("[cluster]\nnats = {:?}\n[roles.echo]\nremote = true\n", nats.url))
        .expect("config written");
    let run_dir = scratch.path("run");
    std::os::unix::fs::DirBuilderExt::mode(&mut std::fs::DirBuilder::new(), 0o700).create(&run_dir).expect("run dir");
    // `skep call` starts the config's daemon on first use; the daemon joins the cluster.
    let skep = |args: &[&str], out: &str| {
        let child = std::process::Command::new(SKEP)
            .args(args)
            .env("XDG_RUNTIME_DIR", &run_dir)
            .env("XDG_STATE_HOME", scratch.path("state"))
            .env("SKEP_NATS_TOKEN", TOKEN)
            .env_remove("SKEP_NO_DAEMON")
            .stdin(std::process::Stdio::null())
            .stdout(std::fs::File::create(scratch.path(out)).expect("stdout file"))
            .stderr(std::fs::File::create(scratch.path(&format!("{out}.err"))).expect("stderr file"))
            .spawn()
            .expect("skep starts");
        Proc { child }
    };
    let path = orchestrator.to_str().expect("UTF-8 path");
    // Even if an assertion fails, no daemon outlives the test.
    let _down = Finally(|| {
        let _ = std::process::Command::new(SKEP)
            .args(["down", "--config", path])
            .env("XDG_RUNTIME_DIR", &run_dir)
            .env("XDG_STATE_HOME", scratch.path("state"))
            .output();
    });
    let mut call = skep(&["call", "--config", path, "echo", "echo", r#"["via the daemon"]"#], "call.out");
    let status = call.exited().await;
    let said = std::fs::read_to_string(scratch.path("call.out.err")).expect("stderr");
    assert!(status.success(), "skep call failed: {said}");
    let printed: Value = serde_json::from_str(&std::fs::read_to_string(scratch.path("call.out")).expect("stdout"))
        .expect("the result is JSON");
    assert_eq!(printed, json!(["via the daemon"]));
    assert_eq!(ran(&scratch.journals(), "echo").len(), 1, "the call ran on the worker's agent");
    let mut down = skep(&["down", "--config", path], "down.out");
    assert!(down.exited().await.success(), "skep down");
    stop_all(std::slice::from_mut(&mut only), &scratch).await;
}

/// Runs its closure when dropped.
struct Finally<F: FnMut()>(F);

impl<F: FnMut()> Drop for Finally<F> {
    fn drop(&mut self) {
        (self.0)();
    }
}
