//! Circuit breakers wired into real pools (reliability 18, and the breaker
//! rules of docs/design.md 8), and command roles.

use std::time::Duration;

use serde_json::{Value, json};
use skep_swarm::{BreakerConfig, BreakerState, Event, Protocol, RoleConfig, Swarm};
use skep_testkit::{call, start};
use tokio::time::Instant;

const AGENT: &str = env!("CARGO_BIN_EXE_skep-test-agent");
const STEP: Duration = Duration::from_secs(30);

fn role(name: &str, flags: &[&str]) -> RoleConfig {
    let mut command = vec![AGENT.to_owned()];
    command.extend(flags.iter().map(|f| (*f).to_owned()));
    let mut role = RoleConfig::with_command(name, command);
    role.breaker = BreakerConfig {
        window: 4,
        min_calls: 2,
        failure_rate: 0.5,
        open_for: Duration::from_millis(300),
        open_for_max: Duration::from_millis(300),
        half_open_probes: 2,
        probe_timeout: Duration::from_millis(400),
        ..BreakerConfig::default()
    };
    role
}

async fn breaker_state(swarm: &Swarm, role: &str) -> BreakerState {
    swarm.stats().await.roles.into_iter().find(|r| r.role == role).expect("the role").breaker.state
}

async fn wait_for_state(swarm: &Swarm, role: &str, want: BreakerState) {
    let deadline = Instant::now() + STEP;
    while breaker_state(swarm, role).await != want {
        assert!(Instant::now() < deadline, "breaker of {role} never became {want:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls until the open period is over (the breaker admits its next call as a probe).
async fn wait_until_probing(swarm: &Swarm, role: &str) {
    let deadline = Instant::now() + STEP;
    loop {
        let stats = swarm.stats().await.roles.into_iter().find(|r| r.role == role).expect("the role");
        if stats.breaker.retry_after_ms == Some(0) {
            return;
        }
        assert!(Instant::now() < deadline, "the open period of {role} never ended: {:?}", stats.breaker);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn the_breaker_opens_fails_fast_half_opens_and_closes() {
    let swarm = start(vec![role("b", &[])]).await;
    let mut events = swarm.subscribe();
    // Caller mistakes never count.
    for _ in 0..4 {
        call(&swarm, "b", "no-such-method", json!([])).await.expect_err("unknown method");
    }
    assert_eq!(breaker_state(&swarm, "b").await, BreakerState::Closed);
    // Two internal errors from the agent in a window of 4 with min_calls 2: open.
    for _ in 0..2 {
        call(&swarm, "b", "fail", json!({"code": -32603, "message": "broken"})).await.expect_err("fails");
    }
    let calls_before = swarm.stats().await.roles[0].calls;
    let err = call(&swarm, "b", "echo", json!([1])).await.expect_err("fails fast");
    assert_eq!(swarm.stats().await.roles[0].calls, calls_before, "refused without reaching an agent");
    assert_eq!(err.code(), -32002, "{err}");
    let data: Value = serde_json::from_str(err.to_error_object().data().expect("data").get()).expect("JSON");
    assert_eq!((data["role"].as_str(), data["state"].as_str()), (Some("b"), Some("open")));
    assert!(data["retryAfterMs"].as_u64().is_some_and(|ms| (1..=300).contains(&ms)), "{data}");
    assert_eq!(data["lastFailure"], "the agent answered -32603");
    // After the open period, two successful probes close it again.
    wait_until_probing(&swarm, "b").await;
    for i in 0..2 {
        assert_eq!(call(&swarm, "b", "echo", json!([i])).await.expect("probe"), json!([i]));
    }
    assert_eq!(breaker_state(&swarm, "b").await, BreakerState::Closed);
    let mut seen = Vec::new();
    while let Ok(event) = events.try_recv() {
        if let Event::BreakerChanged { from, to, .. } = event {
            seen.push((from, to));
        }
    }
    use BreakerState::{Closed, HalfOpen, Open};
    assert_eq!(seen, [(Closed, Open), (Open, HalfOpen), (HalfOpen, Closed)]);
    swarm.shutdown().await;
}

/// reliability 18: a half-open probe that hangs re-opens the breaker after
/// its bound, while the probe itself is still running.
#[tokio::test]
async fn a_hanging_probe_reopens_the_breaker() {
    let swarm = start(vec![role("p", &[])]).await;
    for _ in 0..2 {
        call(&swarm, "p", "fail", json!({"code": -32603, "message": "broken"})).await.expect_err("fails");
    }
    assert_eq!(breaker_state(&swarm, "p").await, BreakerState::Open);
    wait_until_probing(&swarm, "p").await;
    let probe = tokio::spawn({
        let swarm = swarm.clone();
        async move { call(&swarm, "p", "sleep", json!({"ms": 3000})).await }
    });
    wait_for_state(&swarm, "p", BreakerState::HalfOpen).await;
    wait_for_state(&swarm, "p", BreakerState::Open).await;
    assert!(!probe.is_finished(), "the breaker re-opened before the probe ended");
    let snapshot = swarm.stats().await.roles.remove(0).breaker;
    assert!(snapshot.last_failure.as_deref().is_some_and(|f| f.contains("probe unfinished")), "{snapshot:?}");
    probe.abort();
    swarm.shutdown().await;
}

#[tokio::test]
async fn a_failed_role_forces_its_breaker_open() {
    let swarm = start(vec![role("doomed", &["--crash-at-startup"])]).await;
    wait_for_state(&swarm, "doomed", BreakerState::ForcedOpen).await;
    assert_eq!(call(&swarm, "doomed", "echo", json!([])).await.expect_err("failed role").code(), -32003);
    swarm.shutdown().await;
}

fn command_role(name: &str, command: &[&str]) -> RoleConfig {
    let mut role = RoleConfig::with_command(name, command.iter().map(|c| (*c).to_owned()).collect());
    role.protocol = Protocol::Command;
    role.timeout = Duration::from_secs(10);
    role
}

#[tokio::test]
async fn command_roles_run_a_process_per_call() {
    let reply =
        command_role("jq-ish", &["/bin/sh", "-c", r#"read input; echo "{\"got\": $input}"; echo note >&2; exit 3"#]);
    let mut shell = command_role("shelled", &["echo", "hi", "|", "tr", "a-z", "A-Z"]);
    shell.shell = true;
    let literal = command_role("literal", &["echo", "hi", "|", "tr"]);
    // The command writes `pids.tmp` beside `pids`: a directory holds both.
    let scratch = tempfile::Builder::new().prefix("skep-slow-").tempdir().expect("temp dir");
    let pid_file = scratch.path().join("pids");
    let tree = skep_testkit::tree_command(&pid_file);
    let mut slow = command_role("slow", &tree.iter().map(String::as_str).collect::<Vec<_>>());
    // Long enough for the shell to write its pids on a loaded machine.
    slow.timeout = Duration::from_secs(5);
    let swarm = start(vec![reply, shell, literal, slow]).await;
    assert!(swarm.agents().await.is_empty(), "command roles keep no warm agents");

    let out = call(&swarm, "jq-ish", "run", json!({"a": 1})).await.expect("ran");
    assert_eq!((out["exitCode"].as_i64(), out["status"].as_str()), (Some(3), Some("exit code 3")));
    assert_eq!(out["json"], json!({"got": {"a": 1}}));
    assert_eq!(out["stderr"], "note\n");
    // Only with shell = true is the pipe a pipe.
    assert_eq!(call(&swarm, "shelled", "run", json!(null)).await.expect("ran")["stdout"], "HI\n");
    assert_eq!(call(&swarm, "literal", "run", json!(null)).await.expect("ran")["stdout"], "hi | tr\n");
    // The shell and its grandchild (which ignores SIGTERM) answer -32001 at
    // the deadline, and the whole group is killed.
    let err = call(&swarm, "slow", "run", json!(null)).await.expect_err("timed out");
    assert_eq!(err.code(), -32001, "{err}");
    let pids = skep_testkit::pids_in(&pid_file);
    skep_testkit::wait_gone(&pids, "a timed-out command's group").await;
    let stats = swarm.stats().await;
    let jq = stats.roles.iter().find(|r| r.role == "jq-ish").expect("role");
    assert_eq!(jq.calls, 1);
    swarm.shutdown().await;
}

/// Issue 19 item 8: a program that cannot be started is refused with the
/// operating system's reason, for agents (after the restart limit) and for
/// command roles (at once).
#[tokio::test]
async fn a_program_that_cannot_start_is_reported_with_the_os_reason() {
    let not_executable = tempfile::Builder::new().prefix("skep-noexec-").tempfile().expect("a temp file");
    std::fs::write(not_executable.path(), "#!/bin/sh\n").expect("a temp file");
    // Closed, so exec meets the missing execute bit, not a file still open for writing.
    let not_executable = not_executable.into_temp_path();
    let path = not_executable.to_str().expect("UTF-8").to_owned();
    let missing = RoleConfig::with_command("missing", vec!["/nonexistent/skep-agent".to_owned()]);
    let denied = command_role("denied", &[&path]);
    let swarm = start(vec![missing, denied]).await;

    let err = call(&swarm, "missing", "echo", json!(null)).await.expect_err("cannot start");
    assert_eq!(err.code(), -32003, "{err}");
    assert!(err.to_string().contains("No such file or directory"), "{err}");
    let err = call(&swarm, "denied", "run", json!(null)).await.expect_err("cannot start");
    assert!(err.to_string().contains("Permission denied"), "{err}");
    swarm.shutdown().await;
}
