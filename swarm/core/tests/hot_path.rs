//! The pool's hot path under the cases a faster path could get wrong: the
//! supervisor keeps the queue's timeout (callers register no timer), so a
//! caller past `queue_timeout` must leave the queue with -32004 and its
//! breaker permit back, and a call dropped half-way must give its agent back
//! exactly once. Real agent processes (`skep-test-agent`); every wait is
//! bounded and polled; no agent process may survive.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};
use skep_swarm::{BreakerState, CallOptions, RoleConfig, Swarm};
use skep_testkit::{call, config, gone};
use tokio::time::{Instant, timeout};

const AGENT: &str = env!("CARGO_BIN_EXE_skep-test-agent");
/// The longest any single step may take.
const STEP: Duration = Duration::from_secs(20);

/// One agent that takes one call at a time.
fn single(name: &str) -> RoleConfig {
    let mut role = RoleConfig::with_command(name, vec![AGENT.to_owned()]);
    role.min_warm = 1;
    role.max_agents = 1;
    role.concurrency = 1;
    role.timeout = Duration::from_secs(10);
    role.queue_timeout = Duration::from_millis(200);
    role
}

async fn start(role: RoleConfig) -> Swarm {
    timeout(STEP, Swarm::start(config(vec![role]))).await.expect("started in time").expect("started")
}

/// Polls the agents until one is in `state`; returns every pid seen.
async fn wait_state(swarm: &Swarm, state: &str) -> BTreeSet<u32> {
    let deadline = Instant::now() + STEP;
    loop {
        let agents = swarm.agents().await;
        if agents.iter().any(|a| a.state == state) {
            return agents.iter().map(|a| a.pid).filter(|p| *p != 0).collect();
        }
        assert!(Instant::now() < deadline, "no agent became {state}: {agents:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn pid(swarm: &Swarm, role: &str) -> u32 {
    let pid: Value = call(swarm, role, "pid", json!([])).await.expect("pid answers");
    pid.as_u64().expect("a pid is a number") as u32
}

async fn finish(swarm: Swarm, pids: &BTreeSet<u32>) {
    timeout(STEP, swarm.shutdown()).await.expect("shut down in time");
    for pid in pids {
        assert!(gone(*pid), "agent {pid} survived the shutdown");
    }
}

#[tokio::test]
async fn callers_past_the_queue_timeout_leave_the_queue_and_the_agent_serves_on() {
    let swarm = start(single("one")).await;
    let first = pid(&swarm, "one").await;
    let slow = tokio::spawn({
        let swarm = swarm.clone();
        async move { call(&swarm, "one", "sleep", json!({ "ms": 1500 })).await }
    });
    let pids = wait_state(&swarm, "busy").await;
    // Each call is bounded by the test kit (answered within its STEP).
    let queued = futures::future::join_all((0..3).map(|i| call(&swarm, "one", "echo", json!({ "i": i })))).await;
    for outcome in &queued {
        let err = outcome.as_ref().expect_err("the one agent is busy past the queue timeout");
        assert_eq!(err.code(), -32004, "{err}");
    }
    let stats = swarm.stats().await;
    let role = &stats.roles[0];
    assert_eq!(role.queue_depth, 0, "expired callers left the queue");
    assert_eq!(role.agents.busy, 1, "only the sleep holds the agent");
    assert_eq!(role.breaker.state, BreakerState::Closed, "an overloaded queue is no agent failure");
    let slept = timeout(STEP, slow).await.expect("slept in time").expect("joined").expect("slept");
    assert_eq!(slept, json!({ "slept": 1500 }));
    // The same agent, given back once, takes the next call at once.
    assert_eq!(pid(&swarm, "one").await, first);
    let stats = swarm.stats().await;
    // pid, sleep, pid: the three that ran; the expired ones never reached an agent.
    assert_eq!((stats.roles[0].calls, stats.roles[0].cancelled), (3, 0));
    finish(swarm, &pids).await;
}

#[tokio::test]
async fn a_call_dropped_half_way_gives_its_agent_back_once() {
    let swarm = start(single("drop")).await;
    let first = pid(&swarm, "drop").await;
    // The caller gives up while the agent sleeps: the lease drops mid-call.
    let dropped = timeout(Duration::from_millis(300), call(&swarm, "drop", "sleep", json!({ "ms": 3000 }))).await;
    assert!(dropped.is_err(), "the caller gave up first");
    let pids = wait_state(&swarm, "idle").await;
    let stats = swarm.stats().await;
    assert_eq!((stats.roles[0].calls, stats.roles[0].cancelled), (2, 1), "released once, as cancelled");
    // Released once: the one agent takes a call again (twice released would
    // underflow its count; never released would queue this past the timeout).
    let options = CallOptions { timeout: Some(Duration::from_secs(10)), ..CallOptions::default() };
    let again = skep_testkit::call_with(&swarm, "drop", "pid", json!([]), options).await.expect("served");
    assert_eq!(again.as_u64().map(|p| p as u32), Some(first));
    let agents = swarm.agents().await;
    assert_eq!(agents.iter().map(|a| a.in_flight).sum::<usize>(), 0, "{agents:?}");
    finish(swarm, &pids).await;
}
