//! Benchmarks of the bridge (`skep-bridge`), each next to its floor.
//!
//! - `round_trip_100B`: one call at a time over real pipes to a child process,
//!   bridge `Client` → `bridge-echo` against a raw line echo (`raw-echo`).
//! - `pipelined_128`: calls per second with 128 in flight on one connection,
//!   against raw lines with 128 in flight.
//! - `buffers`: encoding a request into a pooled buffer against a fresh one.
//! - `framing`: `FrameReader` splitting an in-memory stream of small frames.
//!
//! Everything runs on a current-thread tokio runtime (faster than
//! multi-thread on the 2-core machines these numbers come from).
//! `docs/benchmarks.md` holds the results and how to reproduce them.

use std::hint::black_box;
use std::process::Stdio;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use futures::StreamExt as _;
use serde_json::value::RawValue;
use skep_benches::raw::raw_pipelined;
use skep_bridge::{
    BufferPool, Client, ClientConfig, DEFAULT_MAX_FRAME, Frame, FrameReader, Framing, RequestOptions, write_request,
};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::runtime::Runtime;

/// Calls in flight in the pipelined benches.
const WINDOW: usize = 128;
/// Calls per criterion iteration in the pipelined benches.
const BATCH: u64 = 1_024;
/// Frames in the framing bench's stream.
const FRAMES: usize = 10_000;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a current-thread runtime starts")
}

/// `{"data":"xxx…"}`, exactly `len` bytes of JSON.
fn params_of(len: usize) -> Box<RawValue> {
    let text = format!("{{\"data\":\"{}\"}}", "x".repeat(len - r#"{"data":""}"#.len()));
    assert_eq!(text.len(), len);
    RawValue::from_string(text).expect("the payload is JSON")
}

/// The request line the bridge client sends for `echo` with `params`.
fn request_line(params: &RawValue) -> Vec<u8> {
    let mut line = Vec::new();
    write_request(&mut line, Some(1), "echo", Some(params));
    line.push(b'\n');
    line
}

/// A child process with piped stdin and stdout, killed when dropped.
fn spawn(program: &str) -> (Child, ChildStdin, ChildStdout) {
    let mut child = Command::new(program)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the echo child starts");
    let stdin = child.stdin.take().expect("stdin is piped");
    let stdout = child.stdout.take().expect("stdout is piped");
    (child, stdin, stdout)
}

/// A bridge client connected to a fresh `bridge-echo`; call inside the runtime.
fn bridge_echo() -> (Child, Client) {
    let (child, stdin, stdout) = spawn(env!("CARGO_BIN_EXE_bridge-echo"));
    (child, Client::connect(stdout, stdin, ClientConfig::default()))
}

async fn bridge_call(client: &Client, params: &RawValue) {
    let reply = client.call_raw("echo", Some(params), RequestOptions::default()).await.expect("echo answers");
    black_box(reply);
}

fn round_trip(c: &mut Criterion) {
    let rt = runtime();
    let params = params_of(100);
    let line = request_line(&params);
    let mut group = c.benchmark_group("round_trip_100B");

    let (_bridge_child, client) = rt.block_on(async { bridge_echo() });
    group.bench_function("bridge", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    bridge_call(&client, &params).await;
                }
                start.elapsed()
            })
        });
    });

    let (_raw_child, mut stdin, stdout) = rt.block_on(async { spawn(env!("CARGO_BIN_EXE_raw-echo")) });
    let mut stdout = BufReader::new(stdout);
    let mut reply = Vec::with_capacity(256);
    group.bench_function("raw_pipe", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    stdin.write_all(&line).await.expect("raw-echo reads");
                    stdout.read_until(b'\n', &mut reply).await.expect("raw-echo writes");
                    assert_eq!(reply.len(), line.len(), "raw-echo returns the line");
                    reply.clear();
                }
                start.elapsed()
            })
        });
    });
    group.finish();
}

/// `calls` echo calls through one client, `WINDOW` in flight at a time.
async fn bridge_pipelined(client: &Client, params: &RawValue, calls: u64) {
    futures::stream::iter(0..calls)
        .map(|_| client.call_raw("echo", Some(params), RequestOptions::default()))
        .buffer_unordered(WINDOW)
        .for_each(|reply| {
            black_box(reply.expect("echo answers"));
            async {}
        })
        .await;
}

fn pipelined(c: &mut Criterion) {
    let rt = runtime();
    let params = params_of(100);
    let line = request_line(&params);
    let mut group = c.benchmark_group("pipelined_128");
    group.throughput(Throughput::Elements(BATCH)).sample_size(10).sampling_mode(SamplingMode::Flat);

    let (_bridge_child, client) = rt.block_on(async { bridge_echo() });
    group.bench_function("bridge", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                bridge_pipelined(&client, &params, iters * BATCH).await;
                start.elapsed()
            })
        });
    });

    let (_raw_child, mut stdin, mut stdout) = rt.block_on(async { spawn(env!("CARGO_BIN_EXE_raw-echo")) });
    group.bench_function("raw_pipe", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                raw_pipelined(&mut stdin, &mut stdout, &line, (iters * BATCH) as usize, WINDOW)
                    .await
                    .expect("raw-echo answers");
                start.elapsed()
            })
        });
    });
    group.finish();
}

/// Encodes one newline-framed request into `buf`, as the client does.
fn encode_into(buf: &mut Vec<u8>, params: &RawValue) {
    write_request(buf, Some(1), "echo", Some(params));
    buf.push(b'\n');
}

fn buffers(c: &mut Criterion) {
    let pool = BufferPool::default();
    let mut group = c.benchmark_group("buffers");
    for (name, size) in [("100B", 100), ("256KiB", 256 * 1024)] {
        let params = params_of(size);
        group.throughput(Throughput::Bytes(request_line(&params).len() as u64));
        group.bench_with_input(BenchmarkId::new("pooled", name), &params, |b, params| {
            b.iter(|| {
                let mut buf = pool.take();
                encode_into(&mut buf, params);
                black_box(&buf);
            });
        });
        group.bench_with_input(BenchmarkId::new("fresh", name), &params, |b, params| {
            b.iter(|| {
                let mut buf = Vec::with_capacity(4096);
                encode_into(&mut buf, params);
                black_box(&buf);
            });
        });
    }
    group.finish();
}

fn framing(c: &mut Criterion) {
    let rt = runtime();
    let payload = params_of(100);
    let mut stream = Vec::with_capacity(FRAMES * 101);
    for _ in 0..FRAMES {
        stream.extend_from_slice(payload.get().as_bytes());
        stream.push(b'\n');
    }
    let mut group = c.benchmark_group("framing");
    group.throughput(Throughput::Bytes(stream.len() as u64));
    group.bench_function("newline_10k_x_100B", |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut frames = FrameReader::new(&stream[..], Some(Framing::Newline), DEFAULT_MAX_FRAME);
                let mut count = 0;
                while let Some(frame) = frames.next().await.expect("reading memory cannot fail") {
                    assert!(matches!(frame, Frame::Message(ref m) if m.len() == 100));
                    count += 1;
                }
                assert_eq!(count, FRAMES);
            });
        });
    });
    group.finish();
}

fn config() -> Criterion {
    Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = config();
    targets = round_trip, pipelined, buffers, framing
}
criterion_main!(benches);
