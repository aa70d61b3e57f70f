//! Coordination over real agents: fan-out, race with cancellation on the
//! wire, broadcast, routing by text, and role caches (reliability 17, 19).

use std::time::Duration;

use serde_json::{Value, json};
use skep_swarm::{CallOptions, RaceCall, RoleConfig, Settled, Swarm};
use skep_testkit::{call, start};
use tokio::time::timeout;

const AGENT: &str = env!("CARGO_BIN_EXE_skep-test-agent");
const STEP: Duration = Duration::from_secs(30);

fn role(name: &str, min_warm: usize, max_agents: usize) -> RoleConfig {
    let mut role = RoleConfig::with_command(name, vec![AGENT.to_owned()]);
    role.min_warm = min_warm;
    role.max_agents = max_agents;
    role
}

fn raw(value: Value) -> Box<serde_json::value::RawValue> {
    serde_json::value::to_raw_value(&value).expect("JSON")
}

async fn role_calls(swarm: &Swarm, role: &str) -> u64 {
    swarm.stats().await.roles.iter().find(|r| r.role == role).map_or(0, |r| r.calls)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_of_1000_over_8_agents_answers_each_once_in_order() {
    let swarm = start(vec![role("fan", 8, 8)]).await;
    let params: Vec<_> = (0..1000).map(|i| raw(json!({ "i": i }))).collect();
    let settled = timeout(STEP, swarm.fanout("fan", "echo", params, None, CallOptions::default()))
        .await
        .expect("in time")
        .expect("fanned out");
    assert_eq!(settled.len(), 1000);
    for (i, outcome) in settled.iter().enumerate() {
        let Settled::Ok(value) = outcome else { panic!("element {i} failed: {outcome:?}") };
        assert_eq!(value.get(), format!(r#"{{"i":{i}}}"#));
    }
    let agents = swarm.agents().await;
    assert_eq!(agents.len(), 8);
    assert_eq!(agents.iter().map(|a| a.calls).sum::<u64>(), 1000);
    assert!(agents.iter().all(|a| a.calls > 0), "the work was spread: {agents:?}");
    let mixed = swarm
        .fanout("fan", "fail", vec![raw(json!({"message": "a"})), raw(json!({}))], Some(1), CallOptions::default())
        .await
        .expect("fanned out");
    let json = serde_json::to_value(&mixed).expect("serializes");
    assert_eq!(json[0]["error"]["message"], "a");
    assert_eq!(json[1]["error"]["code"], -32000);
    swarm.shutdown().await;
}

#[tokio::test]
async fn race_returns_the_first_success_and_cancels_the_losers_on_the_wire() {
    let swarm = start(vec![role("slow-a", 1, 1), role("slow-b", 1, 1), role("fast", 1, 1)]).await;
    let before = swarm.agents().await;
    let sleep =
        |role: &str| RaceCall { role: role.into(), method: "sleep".into(), params: Some(raw(json!({"ms": 1500}))) };
    let calls = vec![
        sleep("slow-a"),
        RaceCall { role: "fast".into(), method: "echo".into(), params: Some(raw(json!(["won"]))) },
        sleep("slow-b"),
    ];
    let win = timeout(STEP, swarm.race(calls, CallOptions::default())).await.expect("in time").expect("a winner");
    assert_eq!((win.index, win.result.get()), (1, r#"["won"]"#));
    // Each loser's agent finishes its sleep, then reads the cancellation of its id 1.
    for role in ["slow-a", "slow-b"] {
        assert_eq!(call(&swarm, role, "cancelled", json!([])).await.expect("asked"), json!([1]), "{role}");
    }
    // The pool is whole: the same agents, all idle, none restarted.
    let after = swarm.agents().await;
    assert_eq!(before.iter().map(|a| a.pid).collect::<Vec<_>>(), after.iter().map(|a| a.pid).collect::<Vec<_>>());
    assert!(after.iter().all(|a| a.state == "idle"), "{after:?}");
    assert!(swarm.stats().await.roles.iter().all(|r| r.errors.is_empty() && r.restarts == 0));
    swarm.shutdown().await;
}

#[tokio::test]
async fn a_race_where_all_fail_lists_each_cause() {
    let swarm = start(vec![role("r", 1, 2)]).await;
    let fail = |m: &str| RaceCall {
        role: "r".into(),
        method: "fail".into(),
        params: Some(raw(json!({"code": 7, "message": m}))),
    };
    let calls = vec![fail("one"), fail("two"), RaceCall { role: "nope".into(), method: "x".into(), params: None }];
    let err = swarm.race(calls, CallOptions::default()).await.expect_err("all fail");
    assert_eq!(err.code(), -32000);
    let data: Value = serde_json::from_str(err.to_error_object().data().expect("data").get()).expect("JSON");
    let mut messages: Vec<String> = data["causes"]
        .as_array()
        .expect("causes")
        .iter()
        .map(|c| c["error"]["message"].as_str().expect("text").to_owned())
        .collect();
    messages.sort();
    assert_eq!(messages.len(), 3);
    assert_eq!(&messages[..2], ["one", "two"]);
    assert!(messages[2].starts_with("unknown role \"nope\""), "{messages:?}");
    swarm.shutdown().await;
}

#[tokio::test]
async fn broadcast_reaches_every_live_agent() {
    let swarm = start(vec![role("all", 3, 3)]).await;
    let replies = timeout(STEP, swarm.broadcast("all", "pid", None, CallOptions::default()))
        .await
        .expect("in time")
        .expect("sent");
    let mut pids: Vec<u64> = replies
        .iter()
        .map(|r| match &r.outcome {
            Settled::Ok(pid) => pid.get().parse().expect("a pid"),
            Settled::Error(e) => panic!("{}: {e:?}", r.agent),
        })
        .collect();
    pids.sort_unstable();
    pids.dedup();
    let mut live: Vec<u64> = swarm.agents().await.iter().map(|a| u64::from(a.pid)).collect();
    live.sort_unstable();
    assert_eq!(pids, live);
    assert_eq!(pids.len(), 3);
    swarm.shutdown().await;
}

#[tokio::test]
async fn text_is_routed_by_the_roles_patterns() {
    let mut review = role("review", 0, 1);
    review.route = vec![r"^review\b".into()];
    let mut lint = role("lint", 0, 1);
    lint.route = vec!["lint|clippy".into()];
    let swarm = start(vec![review, lint]).await;
    assert_eq!(swarm.route("review src/").ok().as_deref(), Some("review"));
    assert_eq!(swarm.route("run clippy").ok().as_deref(), Some("lint"));
    let err = swarm.route("reviewer").expect_err("no match");
    assert!(err.to_string().contains(r#"lint ["lint|clippy"], review ["^review\\b"]"#), "{err}");
    swarm.shutdown().await;
}

/// reliability 19: identical concurrent idempotent calls make one agent call;
/// errors are not cached; a bypass goes to the agent.
#[tokio::test]
async fn idempotent_calls_are_coalesced_cached_and_never_cache_errors() {
    let mut cached = role("cached", 1, 4);
    cached.idempotent = vec!["sleep".into(), "fail".into()];
    let swarm = start(vec![cached]).await;
    let params = raw(json!({"ms": 200}));
    let all = futures::future::join_all(
        (0..50).map(|_| swarm.call("cached", "sleep", Some(&params), CallOptions::default())),
    )
    .await;
    assert!(all.iter().all(|r| r.as_ref().ok().map(|v| v.get()) == Some(r#"{"slept":200}"#)));
    assert_eq!(role_calls(&swarm, "cached").await, 1, "50 identical calls, one agent call");
    call(&swarm, "cached", "sleep", json!({"ms": 200})).await.expect("a hit");
    assert_eq!(role_calls(&swarm, "cached").await, 1);
    let bypass = CallOptions { bypass_cache: true, ..CallOptions::default() };
    swarm.call("cached", "sleep", Some(&params), bypass).await.expect("bypassed");
    assert_eq!(role_calls(&swarm, "cached").await, 2);
    for _ in 0..2 {
        call(&swarm, "cached", "fail", json!({"code": 9, "message": "no"})).await.expect_err("fails");
    }
    assert_eq!(role_calls(&swarm, "cached").await, 4, "errors are not cached");
    swarm.shutdown().await;
}
