//! Benchmarks of the orchestrator's hot paths (`skep-swarm`).
//!
//! - `breaker`: `Breaker::admit` on a closed breaker, alone and with the
//!   `record` that ends the call (what every pooled call pays).
//! - `pool`: one call through `Swarm::call` to a warm `bridge-echo` agent
//!   against the same call made straight on a bridge `Client` to another
//!   `bridge-echo`. The difference is what the pool adds: acquiring an agent,
//!   releasing it, the breaker, stats and events.
//! - `cache`: a role's idempotent cache on its hit path, the key alone, and
//!   the canonical params text the key hashes (100 B params, no runtime).
//!
//! Current-thread runtime, as in `bridge.rs`. Figures: `docs/benchmarks.md`.

use std::hint::black_box;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use futures::FutureExt as _;
use serde_json::value::RawValue;
use skep_bridge::{Client, ClientConfig, RequestOptions};
use skep_swarm::{
    Breaker, BreakerConfig, CacheConfig, CacheKey, CallOptions, CallOutcome, Config, IdempotentCache, Swarm,
    canonical_json,
};
use tokio::process::Command;
use tokio::runtime::Runtime;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a current-thread runtime starts")
}

fn breaker(c: &mut Criterion) {
    let mut group = c.benchmark_group("breaker");
    let mut breaker = Breaker::with_seed(BreakerConfig::default(), 1);
    let now = Instant::now();
    group.bench_function("admit_closed", |b| b.iter(|| black_box(breaker.admit(black_box(now)))));
    group.bench_function("admit_and_record_success", |b| {
        b.iter(|| {
            let permit = breaker.admit(black_box(now)).expect("a closed breaker admits");
            breaker.record(permit, CallOutcome::Success, Duration::from_micros(50), None, now);
        });
    });
    group.finish();
}

fn pool(c: &mut Criterion) {
    let rt = runtime();
    let echo = env!("CARGO_BIN_EXE_bridge-echo");
    let params = RawValue::from_string(format!("{{\"text\":\"{}\"}}", "x".repeat(89))).expect("params are JSON");
    let toml = format!("[roles.echo]\ncommand = [{}]\nmin_warm = 1\nmax_agents = 1\n", serde_json::json!(echo));
    let config = Config::parse(&toml, "<bench>", Path::new(".")).expect("the bench's config is valid");
    let swarm = rt.block_on(Swarm::start(config)).expect("the echo role starts");

    let mut child = rt
        .block_on(async { Command::new(echo).stdin(Stdio::piped()).stdout(Stdio::piped()).kill_on_drop(true).spawn() });
    let child = child.as_mut().expect("bridge-echo starts");
    let (stdin, stdout) = (child.stdin.take().expect("piped"), child.stdout.take().expect("piped"));
    let client = rt.block_on(async { Client::connect(stdout, stdin, ClientConfig::default()) });

    let mut group = c.benchmark_group("pool");
    group.bench_function("swarm_call_warm_agent", |b| {
        b.iter(|| {
            rt.block_on(async {
                black_box(
                    swarm.call("echo", "echo", Some(&params), CallOptions::default()).await.expect("echo answers"),
                )
            })
        });
    });
    group.bench_function("bridge_call_same_agent_kind", |b| {
        b.iter(|| {
            rt.block_on(async {
                black_box(client.call_raw("echo", Some(&params), RequestOptions::default()).await.expect("answers"))
            })
        });
    });
    group.finish();
    rt.block_on(swarm.shutdown());
}

fn config() -> Criterion {
    Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3))
}

fn cache(c: &mut Criterion) {
    let text = format!("{{\"data\":\"{}\"}}", "x".repeat(100 - r#"{"data":""}"#.len()));
    let params = RawValue::from_string(text).expect("the payload is JSON");
    assert_eq!(params.get().len(), 100);
    let cache = IdempotentCache::<()>::new(CacheConfig::default());
    let key = CacheKey::new("", "echo", Some(&params)).expect("params have a key");
    let stored = Arc::<RawValue>::from(params.clone());
    let filled = cache.get_or_call(key, || async move { Ok(stored) }).now_or_never();
    assert!(matches!(filled, Some(Ok(_))), "the first call stores its result at once");
    // A hit never polls anything: one poll completes it.
    let lookup = |key: CacheKey| {
        cache
            .get_or_call(key, || async { Err(()) })
            .now_or_never()
            .expect("a hit completes on its first poll")
            .expect("the key is stored")
    };

    let mut group = c.benchmark_group("cache");
    group.bench_function("hit_with_key", |b| {
        b.iter(|| lookup(CacheKey::new("", "echo", Some(black_box(&params))).expect("params have a key")));
    });
    group.bench_function("hit_key_precomputed", |b| b.iter(|| lookup(black_box(key))));
    group.bench_function("key_only", |b| {
        b.iter(|| CacheKey::new("", "echo", Some(black_box(&params))).expect("params have a key"));
    });
    group.bench_function("canonical_json_only", |b| {
        b.iter(|| canonical_json(black_box(params.get())).expect("params are JSON"));
    });
    group.finish();
    assert_eq!(cache.stats().misses, 1, "every benched lookup was a hit");
}

criterion_group! {
    name = benches;
    config = config();
    targets = breaker, pool, cache
}
criterion_main!(benches);
