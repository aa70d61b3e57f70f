//! The pool's idle set (`supervisor/fast.rs`): callers lease an idle agent
//! without a round trip to the supervisor and give it back with a counter.
//! What that path could get wrong, checked against real agent processes
//! (`skep-test-agent`): an agent given more calls than its concurrency, a
//! dead agent handed out again, a recycle missed or late, and processes left
//! behind by a shutdown that meets callers on the fast path. Every wait is
//! bounded and polled; no agent process may survive.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::{Value, json};
use skep_swarm::{RoleConfig, Swarm};
use skep_testkit::{STEP, agent_role, call, start, wait_gone};
use tokio::time::{Instant, timeout};

/// A role of the test agent with `agents` warm agents of `concurrency` each.
fn role(name: &str, flags: &[&str], agents: usize, concurrency: usize) -> RoleConfig {
    let mut role = agent_role(name, flags);
    role.min_warm = agents;
    role.max_agents = agents;
    role.concurrency = concurrency;
    role.timeout = Duration::from_secs(20);
    role.queue_timeout = Duration::from_secs(20);
    role
}

/// Every agent's pid, once `count` agents are ready.
async fn ready_pids(swarm: &Swarm, count: usize) -> BTreeSet<u32> {
    let deadline = Instant::now() + STEP;
    loop {
        let agents = swarm.agents().await;
        let ready: BTreeSet<u32> =
            agents.iter().filter(|a| a.state == "idle" || a.state == "busy").map(|a| a.pid).collect();
        if ready.len() >= count {
            return ready;
        }
        assert!(Instant::now() < deadline, "{count} agents never became ready: {agents:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn stop(swarm: Swarm, pids: &BTreeSet<u32>) {
    timeout(STEP, swarm.shutdown()).await.expect("shut down in time");
    wait_gone(&pids.iter().copied().collect::<Vec<_>>(), "agents after the shutdown").await;
}

fn pid_of(answer: &Value) -> u32 {
    answer.as_u64().expect("a pid is a number") as u32
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_callers_never_give_an_agent_more_calls_than_its_concurrency() {
    let swarm = start(vec![role("pair", &["--count-overlaps"], 2, 1)]).await;
    let pids = ready_pids(&swarm, 2).await;
    // 128 callers on two threads of their own each: releases and takes race
    // on every worker thread, the supervisor's queue in between.
    let callers = (0..128).map(|i| {
        let swarm = swarm.clone();
        tokio::spawn(async move {
            for round in 0..4 {
                let method = if (i + round) % 3 == 0 { "sleep" } else { "echo" };
                let params = if method == "sleep" { json!({ "ms": 1 }) } else { json!({ "i": i }) };
                call(&swarm, "pair", method, params).await.expect("every call is answered");
            }
        })
    });
    for caller in futures::future::join_all(callers).await {
        caller.expect("no caller panicked");
    }
    // Two callers at once over two agents of concurrency 1: one each.
    let mut seen = BTreeMap::new();
    let deadline = Instant::now() + STEP;
    while seen.len() < 2 {
        let (a, b) =
            tokio::join!(call(&swarm, "pair", "overlaps", json!({})), call(&swarm, "pair", "overlaps", json!({})));
        for answer in [a, b] {
            let answer = answer.expect("overlaps answers");
            seen.insert(answer["pid"].as_u64().expect("a pid") as u32, answer["overlaps"].as_u64().expect("a count"));
        }
        assert!(Instant::now() < deadline, "did not hear from both agents: {seen:?}");
    }
    assert_eq!(seen.keys().copied().collect::<BTreeSet<_>>(), pids, "the same two agents served throughout");
    for (pid, overlaps) in &seen {
        assert_eq!(*overlaps, 0, "agent {pid} was sent a call while another was unanswered");
    }
    let stats = swarm.stats().await;
    let role = &stats.roles[0];
    // 512 calls and the overlaps questions, every one booked.
    assert!(role.calls >= 514, "booked {} calls", role.calls);
    assert_eq!(role.queue_depth, 0);
    assert_eq!(role.agents.busy, 0, "every lease was given back: {:?}", swarm.agents().await);
    stop(swarm, &pids).await;
}

#[tokio::test]
async fn an_agent_killed_mid_run_is_never_handed_out_again() {
    let mut pair = role("pair", &[], 2, 1);
    pair.max_agents = 3;
    let swarm = start(vec![pair]).await;
    let pids = ready_pids(&swarm, 2).await;
    let victim = *pids.iter().next().expect("two agents");
    // Callers keep both agents busy while one is killed under them.
    let busy = (0..8).map(|_| {
        let swarm = swarm.clone();
        tokio::spawn(async move {
            for _ in 0..50 {
                let _ = call(&swarm, "pair", "sleep", json!({ "ms": 1 })).await;
            }
        })
    });
    let busy: Vec<_> = busy.collect();
    // The kill lands on an agent with a call in flight, not an idle one.
    let deadline = Instant::now() + STEP;
    while !swarm.agents().await.iter().any(|a| a.pid == victim && a.state == "busy") {
        assert!(Instant::now() < deadline, "agent {victim} never took a call");
        tokio::task::yield_now().await;
    }
    // SAFETY: a signal to a pid this test's swarm started and still holds.
    assert_eq!(unsafe { libc::kill(victim as i32, libc::SIGKILL) }, 0, "killed the agent");
    wait_gone(&[victim], "the killed agent").await;
    // From here on no call may reach the dead agent: each one is answered,
    // and by a live agent.
    let mut answered_by = BTreeSet::new();
    for _ in 0..40 {
        let (a, b) = tokio::join!(call(&swarm, "pair", "pid", json!([])), call(&swarm, "pair", "pid", json!([])));
        for answer in [a, b] {
            let pid = pid_of(&answer.expect("no call after the death goes to the dead agent"));
            assert_ne!(pid, victim, "the dead agent answered");
            answered_by.insert(pid);
        }
    }
    for caller in futures::future::join_all(busy).await {
        caller.expect("no caller panicked");
    }
    let agents = swarm.agents().await;
    assert!(agents.iter().all(|a| a.pid != victim), "the dead agent is still listed: {agents:?}");
    let all: BTreeSet<u32> = pids.iter().chain(&answered_by).copied().chain(agents.iter().map(|a| a.pid)).collect();
    stop(swarm, &all.into_iter().filter(|p| *p != 0).collect()).await;
}

#[tokio::test]
async fn an_agent_is_recycled_after_exactly_max_calls_even_with_calls_in_parallel() {
    // One agent that takes four calls at once and is due after five: the
    // fast path must stop handing it out at five, not at the booking of the
    // fifth, when more are already on it.
    let mut one = role("one", &[], 1, 4);
    one.max_agents = 2;
    one.max_calls = 5;
    one.recycle_jitter = 0.0;
    let swarm = start(vec![one]).await;
    let mut by_pid: BTreeMap<u32, usize> = BTreeMap::new();
    for _ in 0..6 {
        let answers = futures::future::join_all((0..4).map(|_| call(&swarm, "one", "pid", json!([])))).await;
        for answer in answers {
            *by_pid.entry(pid_of(&answer.expect("pid answers"))).or_default() += 1;
        }
    }
    for (pid, calls) in &by_pid {
        assert!(*calls <= 5, "agent {pid} took {calls} calls, past its max_calls of 5: {by_pid:?}");
    }
    assert!(by_pid.len() >= 5, "24 calls over agents of 5 need at least 5 agents: {by_pid:?}");
    let full = by_pid.values().filter(|c| **c == 5).count();
    assert!(full >= by_pid.len() - 1, "every agent but the last served exactly 5: {by_pid:?}");
    // Sequential calls: the recycle still falls exactly at five.
    let mut runs: Vec<(u32, usize)> = Vec::new();
    for _ in 0..15 {
        let pid = pid_of(&call(&swarm, "one", "pid", json!([])).await.expect("pid answers"));
        match runs.last_mut() {
            Some((last, n)) if *last == pid => *n += 1,
            _ => runs.push((pid, 1)),
        }
    }
    for (pid, n) in &runs[1..runs.len() - 1] {
        assert_eq!(*n, 5, "agent {pid} served {n} calls in a row, not its max_calls: {runs:?}");
    }
    let pids: BTreeSet<u32> = by_pid.keys().copied().chain(runs.iter().map(|(p, _)| *p)).collect();
    stop(swarm, &pids).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_that_meets_callers_on_the_fast_path_leaves_no_process() {
    let swarm = start(vec![role("pair", &[], 2, 2)]).await;
    let pids = ready_pids(&swarm, 2).await;
    let callers: Vec<_> = (0..64)
        .map(|_| {
            let swarm = swarm.clone();
            tokio::spawn(async move {
                // Calls until the pool refuses: each caller ends on its own once it stops.
                let mut served = 0_u32;
                while call(&swarm, "pair", "echo", json!({ "x": 1 })).await.is_ok() {
                    served += 1;
                }
                served
            })
        })
        .collect();
    // Let the callers run on the fast path, then stop under them.
    let deadline = Instant::now() + STEP;
    while swarm.stats().await.roles[0].calls < 200 {
        assert!(Instant::now() < deadline, "the callers never got going");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    timeout(STEP, swarm.shutdown()).await.expect("shut down in time");
    let served: u32 = timeout(STEP, futures::future::join_all(callers))
        .await
        .expect("every caller ended after the shutdown")
        .into_iter()
        .map(|served| served.expect("no caller panicked"))
        .sum();
    assert!(served >= 200, "the callers were served before the shutdown: {served}");
    let err = call(&swarm, "pair", "echo", json!({})).await.expect_err("a stopped pool serves nobody");
    assert!(err.to_string().contains("shutting down"), "{err}");
    wait_gone(&pids.into_iter().collect::<Vec<_>>(), "agents after the shutdown").await;
}
