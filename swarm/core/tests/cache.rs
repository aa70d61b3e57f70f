//! A role's idempotent cache over real agents (`skep-test-agent`'s
//! `echo-raw` answers with its params' exact text). Distinct params must
//! reach the agent and come back as the caller's own (issue 19 item 1);
//! identical ones in flight share one agent call; errors are not stored; the
//! caps hold. Every test is bounded and checks that no agent survives.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::value::RawValue;
use skep_swarm::{CacheStats, CallOptions, Config, RoleConfig, Swarm, SwarmError};
use skep_testkit::gone;
use tokio::time::timeout;

const AGENT: &str = env!("CARGO_BIN_EXE_skep-test-agent");
const STEP: Duration = Duration::from_secs(20);

fn cached_role(max_agents: usize) -> RoleConfig {
    let mut role = RoleConfig::with_command("cached", vec![AGENT.to_owned()]);
    role.min_warm = 1;
    role.max_agents = max_agents;
    role.idempotent = vec!["echo-raw".into(), "sleep".into(), "fail".into()];
    role
}

/// A started swarm and every agent pid it was seen with.
struct Harness {
    swarm: Swarm,
    pids: BTreeSet<u32>,
}

impl Harness {
    async fn start(role: RoleConfig) -> Harness {
        let config = Config { roles: [(role.name.clone(), role)].into(), ..Config::default() };
        let swarm = timeout(STEP, Swarm::start(config)).await.expect("started in time").expect("started");
        let mut harness = Harness { swarm, pids: BTreeSet::new() };
        harness.note_pids().await;
        harness
    }

    /// Calls `method` with params written exactly as `params`; the result's exact text.
    async fn call(&mut self, method: &str, params: &str) -> Result<String, SwarmError> {
        let params = RawValue::from_string(params.to_owned()).expect("test params are JSON");
        let result = timeout(STEP, self.swarm.call("cached", method, Some(&params), CallOptions::default()))
            .await
            .expect("answered in time");
        self.note_pids().await;
        result.map(|r| r.get().to_owned())
    }

    /// Calls the agent really answered (cache hits and joined calls excluded).
    async fn agent_calls(&self) -> u64 {
        self.swarm.stats().await.roles[0].calls
    }

    async fn cache(&self) -> CacheStats {
        self.swarm.stats().await.roles[0].cache.expect("the role has a cache")
    }

    async fn note_pids(&mut self) {
        self.pids.extend(self.swarm.agents().await.iter().map(|a| a.pid).filter(|pid| *pid != 0));
    }

    async fn finish(mut self) {
        self.note_pids().await;
        assert!(!self.pids.is_empty(), "agents were seen");
        timeout(STEP, self.swarm.shutdown()).await.expect("shut down in time");
        for pid in &self.pids {
            assert!(gone(*pid), "agent {pid} survived the shutdown");
        }
    }
}

/// Each params text in turn: the agent answers it (a new agent call) with
/// exactly that text; then asking again is a hit.
async fn each_is_answered_by_the_agent(texts: &[&str]) {
    let mut h = Harness::start(cached_role(1)).await;
    for (i, text) in texts.iter().enumerate() {
        assert_eq!(h.call("echo-raw", text).await.expect("answered"), *text, "the caller's own result");
        assert_eq!(h.agent_calls().await, i as u64 + 1, "the agent saw the call with {text}");
    }
    for text in texts {
        assert_eq!(h.call("echo-raw", text).await.expect("a hit"), *text);
    }
    assert_eq!(h.agent_calls().await, texts.len() as u64, "repeats are hits");
    h.finish().await;
}

#[tokio::test]
async fn integers_past_64_bits_never_share_an_entry() {
    each_is_answered_by_the_agent(&[
        r#"{"n":123456789012345678901234567890}"#,
        r#"{"n":123456789012345678901234567891}"#,
    ])
    .await;
}

#[tokio::test]
async fn two_to_the_64_and_its_successor_never_share_an_entry() {
    each_is_answered_by_the_agent(&[r#"{"n":18446744073709551616}"#, r#"{"n":18446744073709551617}"#]).await;
}

#[tokio::test]
async fn integers_below_i64_min_never_share_an_entry() {
    each_is_answered_by_the_agent(&[r#"{"n":-9223372036854775809}"#, r#"{"n":-9223372036854775810}"#]).await;
}

#[tokio::test]
async fn negative_zero_as_written_is_its_own_entry() {
    each_is_answered_by_the_agent(&[r#"{"n":-0}"#, r#"{"n":-0.0}"#, r#"{"n":0}"#]).await;
}

#[tokio::test]
async fn lone_surrogates_round_trip_exactly_for_a_cached_method() {
    each_is_answered_by_the_agent(&[r#"["\ud800"]"#, r#"["\udc00x"]"#, r#"["\ud800\u0041"]"#]).await;
}

#[tokio::test]
async fn member_order_and_whitespace_share_an_entry() {
    let mut h = Harness::start(cached_role(1)).await;
    let first = r#"{"a":1,"b":[2,{"d":4,"c":3}]}"#;
    assert_eq!(h.call("echo-raw", first).await.expect("answered"), first);
    let reordered = " { \"b\" : [ 2 , { \"c\":3, \"d\":4 } ],\n \"a\":1 } ";
    assert_eq!(h.call("echo-raw", reordered).await.expect("a hit"), first, "the stored result");
    assert_eq!(h.agent_calls().await, 1);
    h.finish().await;
}

#[tokio::test]
async fn params_too_deep_for_a_key_go_to_the_agent_uncached() {
    let mut h = Harness::start(cached_role(1)).await;
    let deep = format!("{}{}", "[".repeat(skep_swarm::MAX_DEPTH + 1), "]".repeat(skep_swarm::MAX_DEPTH + 1));
    for calls in 1..=2 {
        assert_eq!(h.call("echo-raw", &deep).await.expect("answered"), deep);
        assert_eq!(h.agent_calls().await, calls, "never cached");
    }
    assert_eq!(h.cache().await.entries, 0);
    h.finish().await;
}

/// Moved from the bridge's client-level cache: in-flight calls coalesce, errors
/// are not stored, and an expired entry is fetched again.
#[tokio::test]
async fn idempotent_calls_coalesce_never_cache_errors_and_expire() {
    let mut role = cached_role(4);
    // Every entry is already expired when next looked up: expiry without waiting.
    role.cache_ttl = Duration::ZERO;
    let mut h = Harness::start(role).await;
    let params = RawValue::from_string(r#"{"ms":300}"#.to_owned()).expect("JSON");
    let all = timeout(
        STEP,
        futures::future::join_all(
            (0..50).map(|_| h.swarm.call("cached", "sleep", Some(&params), CallOptions::default())),
        ),
    )
    .await
    .expect("answered in time");
    assert!(all.iter().all(|r| r.as_ref().ok().map(|v| v.get()) == Some(r#"{"slept":300}"#)), "{all:?}");
    assert_eq!(h.agent_calls().await, 1, "50 identical calls in flight, one agent call");
    let stats = h.cache().await;
    assert_eq!((stats.misses, stats.coalesced), (1, 49), "{stats:?}");

    h.call("sleep", r#"{"ms":300}"#).await.expect("answered again");
    assert_eq!(h.agent_calls().await, 2, "the expired entry was fetched again");
    assert_eq!(h.cache().await.expirations, 1);

    for calls in [3, 4] {
        let err = h.call("fail", r#"{"code":-32050,"message":"no"}"#).await.expect_err("fails");
        assert!(matches!(err, SwarmError::Agent(ref e) if e.code() == -32050), "{err:?}");
        assert_eq!(h.agent_calls().await, calls, "errors are not cached");
    }
    h.finish().await;
}

#[tokio::test]
async fn the_byte_cap_holds_over_real_results() {
    let mut role = cached_role(1);
    role.cache_bytes = 4096;
    let mut h = Harness::start(role).await;
    for i in 0..40 {
        let text = format!(r#"{{"i":{i},"pad":"{}"}}"#, "x".repeat(400));
        assert_eq!(h.call("echo-raw", &text).await.expect("answered"), text);
        let stats = h.cache().await;
        assert!(stats.bytes <= 4096, "{stats:?}");
    }
    let stats = h.cache().await;
    assert_eq!(h.agent_calls().await, 40);
    assert!(stats.entries >= 1 && stats.evictions == 40 - stats.entries, "{stats:?}");
    h.finish().await;
}
