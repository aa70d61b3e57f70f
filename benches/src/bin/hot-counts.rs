//! Repeatable counts for the hot path, where wall-clock figures on a shared
//! VM are not: heap allocations per call (a counting global allocator), for
//! one call through `Swarm::call` to a warm `bridge-echo` agent and for the same call
//! made straight on a bridge `Client`. The difference is what the pool adds.
//!
//! `cargo run --release -p skep-benches --bin hot-counts [CALLS]`

#![allow(clippy::print_stdout)] // the table on stdout is what this binary is for

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use anyhow::Context as _;
use serde_json::value::RawValue;
use skep_bridge::{Client, ClientConfig, RequestOptions};
use skep_swarm::{CallOptions, Config, Swarm};
use tokio::process::Command;

/// The system allocator, counting every allocation and the bytes asked for.
struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is passed to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        BYTES.fetch_add(layout.size() as u64, Relaxed);
        // SAFETY: the caller's layout, as GlobalAlloc requires.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `alloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        BYTES.fetch_add(new_size as u64, Relaxed);
        // SAFETY: as `alloc`/`dealloc`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations and bytes per call over `calls` calls of `call`.
async fn per_call<F, R>(calls: u64, call: F) -> anyhow::Result<(f64, f64)>
where
    F: Fn() -> R,
    R: Future<Output = anyhow::Result<()>>,
{
    for _ in 0..200 {
        call().await?;
    }
    let (a, b) = (ALLOCS.load(Relaxed), BYTES.load(Relaxed));
    for _ in 0..calls {
        call().await?;
    }
    let (a, b) = (ALLOCS.load(Relaxed) - a, BYTES.load(Relaxed) - b);
    Ok((a as f64 / calls as f64, b as f64 / calls as f64))
}

fn echo() -> anyhow::Result<PathBuf> {
    let me = std::env::current_exe()?;
    let echo = me.with_file_name("bridge-echo");
    anyhow::ensure!(echo.is_file(), "{} is missing: build skep-benches' binaries", echo.display());
    Ok(echo)
}

fn main() -> anyhow::Result<()> {
    let calls: u64 = std::env::args().nth(1).map_or(Ok(20_000), |n| n.parse()).context("CALLS is a number")?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let echo = echo()?;
        let params = RawValue::from_string(format!("{{\"text\":\"{}\"}}", "x".repeat(89)))?;
        let toml = format!("[roles.echo]\ncommand = [{}]\nmin_warm = 1\nmax_agents = 1\n", serde_json::json!(echo));
        let config = Config::parse(&toml, "<hot-counts>", Path::new("."))?;
        let swarm = Swarm::start(config).await?;
        // What every call's state machine moves around (and what a sidecar boxes per request).
        let future_bytes = std::mem::size_of_val(&swarm.call("echo", "echo", Some(&params), CallOptions::default()));
        let pooled = per_call(calls, || async {
            swarm.call("echo", "echo", Some(&params), CallOptions::default()).await.map(drop).map_err(Into::into)
        })
        .await?;
        swarm.shutdown().await;

        let mut child = Command::new(&echo).stdin(Stdio::piped()).stdout(Stdio::piped()).kill_on_drop(true).spawn()?;
        let (stdin, stdout) = (child.stdin.take().context("piped")?, child.stdout.take().context("piped")?);
        let client = Client::connect(stdout, stdin, ClientConfig::default());
        let client_future =
            std::mem::size_of_val(&client.call_raw_notified("echo", Some(&params), RequestOptions::default(), |_| {}));
        let bare = per_call(calls, || async {
            client.call_raw("echo", Some(&params), RequestOptions::default()).await.map(drop).map_err(Into::into)
        })
        .await?;
        client.close();
        child.wait().await?;

        println!("| path | allocations per call | bytes allocated per call |");
        println!("| --- | ---: | ---: |");
        println!("| `Swarm::call` → warm bridge-echo | {:.2} | {:.0} |", pooled.0, pooled.1);
        println!("| bridge `Client::call_raw` → bridge-echo | {:.2} | {:.0} |", bare.0, bare.1);
        println!("| what the pool adds | {:.2} | {:.0} |", pooled.0 - bare.0, pooled.1 - bare.1);
        println!(
            "\n`Swarm::call`'s future: {future_bytes} bytes; `Client::call_raw_notified`'s: {client_future} bytes"
        );
        anyhow::Ok(())
    })
}
