//! Warm pools against real agent processes that misbehave on purpose
//! (`skep-test-agent`), one test per scenario of docs/reliability.md in
//! scope here. Every test is bounded, polls instead of sleeping, and checks
//! after shutdown that no agent process it saw is left.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};
use skep_swarm::{CallOptions, Event, Outcome, RoleConfig, Swarm, SwarmError};
use skep_testkit::{config, gone};
use tokio::time::{Instant, timeout};

const AGENT: &str = env!("CARGO_BIN_EXE_skep-test-agent");
/// The longest any single step may take.
const STEP: Duration = Duration::from_secs(20);

fn role(name: &str, flags: &[&str]) -> RoleConfig {
    let mut command = vec![AGENT.to_owned()];
    command.extend(flags.iter().map(|f| (*f).to_owned()));
    let mut role = RoleConfig::with_command(name, command);
    role.min_warm = 1;
    role.max_agents = 2;
    role.timeout = Duration::from_secs(10);
    role
}

/// A started swarm and every agent pid it was seen with.
struct Harness {
    swarm: Swarm,
    pids: BTreeSet<u32>,
}

impl Harness {
    async fn start(roles: Vec<RoleConfig>) -> Harness {
        let swarm = timeout(STEP, Swarm::start(config(roles))).await.expect("started in time").expect("started");
        let mut h = Harness { swarm, pids: BTreeSet::new() };
        h.ready_pids("").await;
        h
    }

    async fn call(&self, role: &str, method: &str, params: Value) -> Result<Value, SwarmError> {
        self.call_with(role, method, params, CallOptions::default()).await
    }

    async fn call_with(
        &self,
        role: &str,
        method: &str,
        params: Value,
        options: CallOptions,
    ) -> Result<Value, SwarmError> {
        skep_testkit::call_with(&self.swarm, role, method, params, options).await
    }

    /// Pids of the role's agents that are ready now (all roles for "").
    async fn ready_pids(&mut self, role: &str) -> BTreeSet<u32> {
        let agents = self.swarm.agents().await;
        let pids: BTreeSet<u32> = agents
            .iter()
            .filter(|a| (role.is_empty() || a.role == role) && a.pid != 0 && a.state != "stopping")
            .map(|a| a.pid)
            .collect();
        self.pids.extend(&pids);
        pids
    }

    /// Polls until `check` holds for the role's ready pids.
    async fn wait_for_pids(&mut self, role: &str, what: &str, check: impl Fn(&BTreeSet<u32>) -> bool) -> BTreeSet<u32> {
        let deadline = Instant::now() + STEP;
        loop {
            let pids = self.ready_pids(role).await;
            if check(&pids) {
                return pids;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}; agents: {:?}", self.swarm.agents().await);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Shuts down and checks that no agent process seen is left.
    async fn finish(mut self) {
        self.ready_pids("").await;
        timeout(STEP, self.swarm.shutdown()).await.expect("shut down in time");
        for pid in &self.pids {
            assert!(gone(*pid), "agent {pid} survived the shutdown");
        }
        assert!(self.swarm.agents().await.is_empty());
    }
}

#[tokio::test]
async fn warm_agents_are_reused_and_stop_cleanly_on_eof() {
    let mut r = role("warm", &[]);
    r.min_warm = 2;
    let mut h = Harness::start(vec![r]).await;
    let mut events = h.swarm.subscribe();
    let warm = h.ready_pids("warm").await;
    assert_eq!(warm.len(), 2);
    for i in 0..20 {
        assert_eq!(h.call("warm", "echo", json!({ "i": i })).await.expect("echo"), json!({ "i": i }));
    }
    let pid = h.call("warm", "pid", json!([])).await.expect("pid");
    assert!(warm.contains(&(pid.as_u64().expect("a number") as u32)));
    let stats = h.swarm.stats().await;
    assert_eq!((stats.roles[0].calls, stats.roles[0].restarts), (21, 0));
    assert!(stats.roles[0].latency_us.p50 > 0);
    h.swarm.shutdown().await;
    // Reliability 11: exiting on stdin EOF is a normal stop, not a crash.
    let mut exits = Vec::new();
    while let Ok(event) = events.try_recv() {
        if let Event::AgentExited { status, expected, .. } = event {
            exits.push((status, expected));
        }
    }
    assert_eq!(exits, vec![("exit code 0".to_owned(), true); 2]);
    h.finish().await;
}

#[tokio::test]
async fn agent_errors_pass_through_and_unknown_roles_are_named() {
    let h = Harness::start(vec![role("r", &[])]).await;
    let err = h.call("r", "fail", json!({ "code": -32050, "message": "nope" })).await.expect_err("an error");
    let SwarmError::Agent(obj) = &err else { panic!("expected the agent's error, got {err:?}") };
    assert_eq!((obj.code(), obj.message()), (-32050, "nope"));
    let err = h.call("nosuch", "echo", json!([])).await.expect_err("unknown role");
    assert_eq!(err.code(), -32602);
    assert!(err.to_string().contains("known roles: r"), "{err}");
    h.finish().await;
}

/// Reliability 1: kill -9 mid-call → -32003 at once, and the pool refills.
#[tokio::test]
async fn a_killed_agent_fails_its_call_at_once_and_is_replaced() {
    let mut h = Harness::start(vec![role("k", &[])]).await;
    let victim = *h.ready_pids("k").await.first().expect("one warm agent");
    let options = CallOptions { timeout: Some(Duration::from_secs(3600)), ..CallOptions::default() };
    let call = h.call_with("k", "sleep", json!({ "ms": 3_600_000 }), options);
    let kill = async {
        h.swarm.agents().await; // the call is in flight once the agent is busy
        let deadline = Instant::now() + STEP;
        while !h.swarm.agents().await.iter().any(|a| a.pid == victim && a.state == "busy") {
            assert!(Instant::now() < deadline, "the call never reached the agent");
            tokio::task::yield_now().await;
        }
        // SAFETY: sending a signal to a pid we spawned.
        assert_eq!(unsafe { libc::kill(victim as libc::pid_t, libc::SIGKILL) }, 0);
    };
    let (result, ()) = tokio::join!(call, kill);
    let err = result.expect_err("the call fails");
    assert_eq!(err.code(), -32003, "{err}");
    let data = err.to_error_object().data().map(|d| d.get().to_owned()).expect("data");
    assert!(data.contains("killed by SIGKILL"), "{data}");
    h.wait_for_pids("k", "a replacement agent", |pids| !pids.is_empty() && !pids.contains(&victim)).await;
    // Counted once, as a crash, whichever of the call's end and the exit was seen first.
    let recycled = h.swarm.stats().await.roles[0].recycled;
    assert_eq!(recycled, skep_swarm::Recycled { crash: 1, ..Default::default() });
    h.finish().await;
}

/// Reliability 2: a hung agent → -32001 at the deadline, and it is replaced.
#[tokio::test]
async fn a_hung_agent_times_out_and_is_replaced() {
    let mut h = Harness::start(vec![role("h", &["--hang"])]).await;
    let hung = h.ready_pids("h").await;
    let options = CallOptions { timeout: Some(Duration::from_millis(300)), ..CallOptions::default() };
    let err = h.call_with("h", "echo", json!([1]), options).await.expect_err("no answer");
    assert!(matches!(err, SwarmError::Timeout { .. }), "{err:?}");
    assert_eq!(err.code(), -32001);
    h.wait_for_pids("h", "the hung agent replaced", |pids| !pids.is_empty() && pids.is_disjoint(&hung)).await;
    for pid in &hung {
        assert!(gone(*pid), "the hung agent {pid} was not stopped");
    }
    h.finish().await;
}

/// Reliability 3: crashing at start-up in a loop → backoff, the restart limit
/// trips, the role fails fast naming the role and the agent's last words.
#[tokio::test]
async fn a_crash_looping_role_fails_fast_with_its_stderr() {
    let h = Harness::start(vec![role("loop", &["--crash-at-startup"]), role("fine", &[])]).await;
    let deadline = Instant::now() + STEP * 2;
    while !h.swarm.stats().await.roles.iter().any(|r| r.role == "loop" && r.failed) {
        assert!(Instant::now() < deadline, "the role never failed: {:?}", h.swarm.stats().await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let err = h.call("loop", "echo", json!([])).await.expect_err("fails fast");
    assert!(matches!(err, SwarmError::RoleFailed { .. }), "{err:?}");
    assert_eq!(err.code(), -32003);
    assert!(err.to_string().contains("role loop has failed"), "{err}");
    let data = err.to_error_object().data().map(|d| d.get().to_owned()).expect("data");
    assert!(data.contains("exit code 2") && data.contains("crashing at startup"), "{data}");
    // Other roles are unaffected.
    assert_eq!(h.call("fine", "echo", json!([7])).await.expect("echo"), json!([7]));
    h.finish().await;
}

/// Reliability 4: stray prints on stdout are tolerated.
#[tokio::test]
async fn garbage_on_stdout_does_not_break_calls() {
    let h = Harness::start(vec![role("g", &["--garbage-stdout"])]).await;
    for i in 0..10 {
        assert_eq!(h.call("g", "echo", json!([i])).await.expect("echo"), json!([i]));
    }
    h.finish().await;
}

/// Reliability 5: a line without end → bounded memory, a timeout, a replacement.
#[tokio::test]
async fn an_endless_line_times_out_and_is_replaced() {
    let mut h = Harness::start(vec![role("n", &["--no-newline-flood"])]).await;
    let flooding = h.ready_pids("n").await;
    let options = CallOptions { timeout: Some(Duration::from_millis(500)), ..CallOptions::default() };
    let err = h.call_with("n", "echo", json!([]), options).await.expect_err("no answer");
    assert_eq!(err.code(), -32001, "{err}");
    h.wait_for_pids("n", "a replacement", |pids| !pids.is_empty() && pids.is_disjoint(&flooding)).await;
    h.finish().await;
}

/// Reliability 7: an agent that never reads: our write times out, others go on.
#[tokio::test]
async fn an_agent_that_never_reads_does_not_block_others() {
    let h = Harness::start(vec![role("deaf", &["--no-read"]), role("ok", &[])]).await;
    let big = "x".repeat(1 << 20);
    let options = CallOptions { timeout: Some(Duration::from_millis(500)), ..CallOptions::default() };
    let (deaf, ok) = tokio::join!(h.call_with("deaf", "echo", json!([big]), options), h.call("ok", "echo", json!([1])));
    assert_eq!(deaf.expect_err("times out").code(), -32001);
    assert_eq!(ok.expect("answered"), json!([1]));
    h.finish().await;
}

/// Reliability 8: a stderr flood neither slows nor stops the agent.
#[tokio::test]
async fn a_stderr_flood_does_not_block_calls() {
    let h = Harness::start(vec![role("loud", &["--stderr-flood"])]).await;
    for i in 0..50 {
        assert_eq!(h.call("loud", "echo", json!([i])).await.expect("echo"), json!([i]));
    }
    h.finish().await;
}

/// Reliability 9: a grandchild holding stdout does not hide the agent's death.
#[tokio::test]
async fn a_grandchild_holding_stdout_is_killed_with_its_group() {
    let h = Harness::start(vec![role("gc", &["--grandchild"])]).await;
    let grandchild = h.call("gc", "grandchild", json!([])).await.expect("pid").as_u64().expect("a pid") as u32;
    let err = h.call("gc", "crash", json!({ "code": 3 })).await.expect_err("crashed");
    assert_eq!(err.code(), -32003, "{err}");
    let deadline = Instant::now() + STEP;
    while !gone(grandchild) {
        assert!(Instant::now() < deadline, "grandchild {grandchild} survived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    h.finish().await;
}

/// Reliability 10 and 11: the stop ladder escalates for agents that ignore EOF
/// and SIGTERM, and nothing survives.
#[tokio::test]
async fn stubborn_agents_are_killed_at_shutdown() {
    let mut stubborn = role("stubborn", &["--ignore-eof", "--ignore-sigterm"]);
    stubborn.min_warm = 2;
    let h = Harness::start(vec![stubborn, role("eof-deaf", &["--ignore-eof"])]).await;
    let mut events = h.swarm.subscribe();
    h.swarm.shutdown().await;
    let mut exits = Vec::new();
    while let Ok(event) = events.try_recv() {
        if let Event::AgentExited { role, status, .. } = event {
            exits.push((role, status));
        }
    }
    exits.sort();
    assert_eq!(
        exits,
        [
            ("eof-deaf".to_owned(), "killed by SIGTERM (stop ladder)".to_owned()),
            ("stubborn".to_owned(), "killed by SIGKILL (stop ladder)".to_owned()),
            ("stubborn".to_owned(), "killed by SIGKILL (stop ladder)".to_owned()),
        ]
    );
    h.finish().await;
}

#[tokio::test]
async fn a_full_pool_answers_overloaded_after_the_queue_timeout() {
    let mut r = role("one", &[]);
    r.max_agents = 1;
    r.queue_timeout = Duration::from_millis(200);
    let h = Harness::start(vec![r]).await;
    let (slow, queued) = tokio::join!(h.call("one", "sleep", json!({ "ms": 2000 })), async {
        // Queue only once the one agent is busy with the sleep.
        let deadline = Instant::now() + STEP;
        while !h.swarm.agents().await.iter().any(|a| a.state == "busy") {
            assert!(Instant::now() < deadline, "the sleep never reached the agent");
            tokio::task::yield_now().await;
        }
        h.call("one", "echo", json!([])).await
    });
    assert_eq!(slow.expect("slept"), json!({ "slept": 2000 }));
    let err = queued.expect_err("overloaded");
    assert_eq!(err.code(), -32004, "{err}");
    h.finish().await;
}

#[tokio::test]
async fn agents_are_recycled_after_max_calls_and_shrunk_when_idle() {
    let mut r = role("cycle", &[]);
    r.max_calls = 3;
    r.idle_timeout = Duration::from_millis(300);
    let mut h = Harness::start(vec![r]).await;
    let mut pids = Vec::new();
    for _ in 0..6 {
        pids.push(h.call("cycle", "pid", json!([])).await.expect("pid"));
    }
    assert_eq!(pids[0], pids[2]);
    assert_ne!(pids[2], pids[3], "recycled after 3 calls");
    assert_eq!(h.swarm.stats().await.roles[0].recycled.calls, 2, "agents of 3 calls each served 6");
    // Two concurrent calls grow the pool to max_agents; idleness shrinks it back.
    let (a, b) =
        tokio::join!(h.call("cycle", "sleep", json!({ "ms": 300 })), h.call("cycle", "sleep", json!({ "ms": 300 })));
    a.expect("slept");
    b.expect("slept");
    h.wait_for_pids("cycle", "two agents", |p| p.len() == 2).await;
    h.wait_for_pids("cycle", "the pool shrunk back to min_warm", |p| p.len() == 1).await;
    h.finish().await;
}

#[tokio::test]
async fn the_initialize_handshake_gates_readiness() {
    let mut r = role("init", &["--startup-delay-ms", "200"]);
    r.handshake = skep_swarm::Handshake::Initialize;
    let h = Harness::start(vec![r]).await;
    let agents = h.swarm.agents().await;
    assert_eq!(agents.iter().map(|a| a.state).collect::<Vec<_>>(), ["idle"]);
    assert_eq!(h.call("init", "echo", json!([1])).await.expect("echo"), json!([1]));
    h.finish().await;
}

/// Reliability 4, second half: past 100 lines of protocol noise an agent is replaced.
#[tokio::test]
async fn a_noisy_agent_is_replaced_past_the_threshold() {
    let mut r = role("noisy", &["--garbage-stdout"]);
    r.max_agents = 1;
    let mut h = Harness::start(vec![r]).await;
    let first = h.call("noisy", "pid", json!([])).await.expect("pid");
    for i in 0..100 {
        assert_eq!(h.call("noisy", "echo", json!([i])).await.expect("echo"), json!([i]));
    }
    // The 101st noise line came with the last call; its agent is being replaced.
    let later = h.call("noisy", "pid", json!([])).await.expect("pid");
    assert_ne!(first, later, "the noisy agent was kept");
    let recycled = h.swarm.stats().await.roles[0].recycled;
    assert_eq!(recycled, skep_swarm::Recycled { noise: 1, ..Default::default() });
    h.ready_pids("noisy").await;
    h.finish().await;
}

#[tokio::test]
async fn a_call_dropped_by_its_caller_is_reported_and_counted_as_cancelled() {
    let h = Harness::start(vec![role("drop", &[])]).await;
    let mut events = h.swarm.subscribe();
    let params = serde_json::value::to_raw_value(&json!({ "ms": 2000 })).expect("JSON");
    // The caller gives up (as a cancelled sidecar request or an aborted Node call does).
    let gave_up =
        timeout(Duration::from_millis(100), h.swarm.call("drop", "sleep", Some(&params), CallOptions::default()));
    assert!(gave_up.await.is_err(), "a 2 s sleep answered within 100 ms");
    let finished = timeout(STEP, async {
        loop {
            match events.recv().await.expect("events flow") {
                Event::CallFinished { method, outcome, .. } if method == "sleep" => return outcome,
                _ => continue,
            }
        }
    })
    .await
    .expect("CallFinished for the dropped call");
    assert_eq!(finished, Outcome::Cancelled);
    // Counted as a call of its own outcome: not lost, not an error.
    let deadline = Instant::now() + STEP;
    let stats = loop {
        let stats = h.swarm.stats().await.roles.remove(0);
        if stats.calls > 0 || Instant::now() > deadline {
            break stats;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!((stats.calls, stats.cancelled, stats.errors.len()), (1, 1, 0), "{stats:?}");
    h.call("drop", "echo", json!([1])).await.expect("echo");
    let stats = h.swarm.stats().await.roles.remove(0);
    assert_eq!((stats.calls, stats.cancelled, stats.errors.len()), (2, 1, 0), "{stats:?}");
    h.finish().await;
}

/// Running processes (not zombies) whose command line holds `--tag N`.
fn tagged_processes(tag: u32) -> usize {
    let needle = format!("\0--tag\0{tag}\0");
    let Ok(entries) = std::fs::read_dir("/proc") else { return 0 };
    entries
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().bytes().all(|b| b.is_ascii_digit()))
        .filter(|e| {
            let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
            let zombie = stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'));
            !zombie && String::from_utf8_lossy(&cmdline).contains(&needle)
        })
        .count()
}

/// Issue 19 item 2: a role whose calls all time out (the agent sleeps 5 s
/// per call and ignores SIGTERM) under a steady stream of calls never has
/// more than `max_agents` processes alive, stopping ones included.
#[tokio::test]
async fn max_agents_bounds_the_processes_of_a_role_whose_calls_time_out() {
    let tag = fastrand::u32(1_000_000..u32::MAX);
    let tag_text = tag.to_string();
    let mut hung = role("hung", &["--ignore-sigterm", "--tag", &tag_text]);
    hung.timeout = Duration::from_millis(300);
    let h = Harness::start(vec![hung]).await;
    let swarm = h.swarm.clone();
    let calls = tokio::spawn(async move {
        let mut calls = Vec::new();
        for _ in 0..20 {
            let swarm = swarm.clone();
            calls.push(tokio::spawn(async move {
                let params = serde_json::value::to_raw_value(&json!({"ms": 5000})).expect("JSON");
                swarm.call("hung", "sleep", Some(&params), CallOptions::default()).await
            }));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        for call in calls {
            let _ = call.await;
        }
    });
    let (mut most, mut samples) = (0, 0);
    let deadline = Instant::now() + STEP * 3;
    while !calls.is_finished() {
        assert!(Instant::now() < deadline, "the calls never ended");
        most = most.max(tagged_processes(tag));
        samples += 1;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(samples > 10 && most > 0, "the load was never observed ({samples} samples)");
    assert!(most <= 2, "{most} processes of a role with max_agents = 2 were alive at once");
    h.swarm.shutdown().await;
    assert_eq!(tagged_processes(tag), 0, "processes left after shutdown");
}

/// An agent whose call was given up on is still busy with it when it ignores
/// `$/cancelRequest` (the test agent does, for `sleep`): the next call goes
/// to an idle agent, not to wait behind the cancelled one.
#[tokio::test]
async fn a_call_after_a_cancelled_one_goes_to_an_idle_agent() {
    let mut both = role("pair", &[]);
    both.min_warm = 2;
    let mut h = Harness::start(vec![both]).await;
    h.wait_for_pids("pair", "two ready agents", |p| p.len() == 2).await;
    let mut events = h.swarm.subscribe();
    let params = serde_json::value::to_raw_value(&json!({ "ms": 3000 })).expect("JSON");
    let gave_up =
        timeout(Duration::from_millis(100), h.swarm.call("pair", "sleep", Some(&params), CallOptions::default()));
    assert!(gave_up.await.is_err(), "a 3 s sleep answered within 100 ms");
    let sleeper = timeout(STEP, async {
        loop {
            match events.recv().await.expect("events flow") {
                Event::CallStarted { agent, method, .. } if method == "sleep" => return agent,
                _ => continue,
            }
        }
    })
    .await
    .expect("the sleep started");
    let agents = h.swarm.agents().await;
    let sleeper_pid = agents.iter().find(|a| a.id == sleeper).expect("the sleeper is listed").pid;
    for _ in 0..3 {
        let pid = h.call("pair", "pid", json!([])).await.expect("pid").as_u64().expect("a pid") as u32;
        assert_ne!(pid, sleeper_pid, "a call was sent to {sleeper}, still sleeping for a caller that left");
    }
    h.finish().await;
}
