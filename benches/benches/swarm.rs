//! Benchmarks of the orchestrator's hot paths (`skep-swarm`).
//!
//! - `breaker`: `Breaker::admit` on a closed breaker, alone and with the
//!   `record` that ends the call (what every pooled call pays).
//! - `pool`: one call through `Swarm::call` to a warm `bridge-echo` agent
//!   against the same call made straight on a bridge `Client` to another
//!   `bridge-echo`. The difference is what the pool adds: acquiring an agent,
//!   releasing it, the breaker, stats and events.
//!
//! Current-thread runtime, as in `bridge.rs`. Figures: `docs/benchmarks.md`.

use std::hint::black_box;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::value::RawValue;
use skep_bridge::{CallOptions as BridgeCallOptions, Client, ClientConfig};
use skep_swarm::{Breaker, BreakerConfig, CallOptions, CallOutcome, Config, Swarm};
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
                black_box(client.call_raw("echo", Some(&params), BridgeCallOptions::default()).await.expect("answers"))
            })
        });
    });
    group.finish();
    rt.block_on(swarm.shutdown());
}

fn config() -> Criterion {
    Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = config();
    targets = breaker, pool
}
criterion_main!(benches);
