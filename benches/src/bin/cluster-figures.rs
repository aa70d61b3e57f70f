//! Remote roles over NATS, side by side in one run (docs/benchmarks.md):
//! one call at a time to a local pool, to a remote role through one
//! `skep worker`, and a bare NATS request/reply; throughput with 1, 2 and 3
//! workers; failover when a worker is killed under load.
//!
//! ```sh
//! cargo build --release -p skep -p skep-benches
//! target/release/cluster-figures --skep target/release/skep
//! ```
//!
//! Starts its own nats-server (loopback, a token) and workers, and stops them.

#![allow(clippy::print_stdout)] // the table on stdout is what this binary is for

use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use futures::StreamExt;
use serde_json::value::RawValue;
use skep_cluster::RemoteClient;
use skep_swarm::{CallOptions, ClusterConfig, Config, Secret, Swarm};

const TOKEN: &str = "bench-token";

#[derive(Parser)]
struct Args {
    /// The skep binary (workers run `skep worker`, agents `skep agent demo`).
    #[arg(long, default_value = "target/release/skep")]
    skep: PathBuf,
    /// The nats-server binary.
    #[arg(long, default_value = "/usr/sbin/nats-server")]
    nats_server: PathBuf,
    /// Calls per latency sample set.
    #[arg(long, default_value_t = 5000)]
    calls: usize,
    /// Calls per throughput run.
    #[arg(long, default_value_t = 20_000)]
    throughput_calls: usize,
    /// Calls in flight in the throughput runs.
    #[arg(long, default_value_t = 64)]
    in_flight: usize,
    /// The remote role's timeout: past 3 heartbeats (3 s) workers send a "taken" notice per call.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// Only the one-call-at-a-time latencies, and CPU and context switches per remote call.
    #[arg(long)]
    latency_only: bool,
    /// Internal: serve the bare echo on this NATS URL in this process until killed.
    #[arg(long, hide = true, value_name = "URL")]
    echo_responder: Option<String>,
}

/// A child killed when dropped.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    match args.echo_responder {
        Some(url) => runtime.block_on(respond(&url)),
        None => runtime.block_on(run(args)),
    }
}

/// The subject the bare echo answers on.
const ECHO: &str = "bench.echo";

/// Answers every request on [`ECHO`] with its payload, on a connection of its
/// own; says `ready` on stdout once its subscription is on the server.
async fn respond(url: &str) -> anyhow::Result<()> {
    let cluster = ClusterConfig { token: Some(Secret::new(TOKEN.into())), ..ClusterConfig::new(url) };
    let nats = skep_cluster::connect(&cluster, "bench responder").await?;
    let mut sub = nats.subscribe(ECHO).await?;
    nats.flush().await?;
    println!("ready");
    while let Some(m) = sub.next().await {
        if let Some(reply) = m.reply {
            let _ = nats.publish(reply, m.payload).await;
        }
    }
    Ok(())
}

/// [`respond`] in a child process of its own (this binary again), once it is ready.
fn responder_process(url: &str) -> anyhow::Result<Guard> {
    use std::io::BufRead;
    let mut child = Command::new(std::env::current_exe()?)
        .args(["--echo-responder", url])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("the responder process")?;
    let stdout = child.stdout.take().context("the responder's stdout")?;
    let mut line = String::new();
    std::io::BufReader::new(stdout).read_line(&mut line)?;
    let guard = Guard(child);
    anyhow::ensure!(line.trim() == "ready", "the responder did not start: {line:?}");
    Ok(guard)
}

async fn run(args: Args) -> anyhow::Result<()> {
    let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?.local_addr()?.port();
    let nats = Guard(
        Command::new(&args.nats_server)
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "--auth", TOKEN])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("nats-server")?,
    );
    let nats_pid = nats.0.id();
    let started = Instant::now();
    while TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err() {
        if started.elapsed() > Duration::from_secs(10) {
            bail!("nats-server did not start");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let url = format!("nats://127.0.0.1:{port}");
    let cluster = ClusterConfig { token: Some(Secret::new(TOKEN.into())), ..ClusterConfig::new(&url) };
    let dir = tempfile_dir()?;
    let skep = args.skep.canonicalize().context("the skep binary")?;
    let role = |extra: &str| format!("[roles.echo]\ncommand = [{:?}, \"agent\", \"demo\"]\n{extra}\n", skep.display());
    let worker_config = dir.join("worker.toml");
    std::fs::write(&worker_config, role("min_warm = 4\nmax_agents = 4\nconcurrency = 16"))?;
    let start_worker = || -> anyhow::Result<Guard> {
        let child = Command::new(&skep)
            .args(["worker", "--nats", &url, "--grace", "1s", "--config"])
            .arg(&worker_config)
            .env("SKEP_NATS_TOKEN", TOKEN)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        Ok(Guard(child))
    };
    let params = RawValue::from_string(format!("{{\"text\":\"{}\"}}", "x".repeat(180)))?;

    println!("## one call at a time, ~200 B params, {} calls each (µs)", args.calls);
    println!("| path | p50 | p90 | p99 |\n| --- | --- | --- | --- |");
    // Bare NATS: a responder echoing on its own connection, first in this
    // process (one thread: the requester's wake-up serves the request too),
    // then in a process of its own, as a worker is.
    let responder = RemoteClient::connect(&cluster, "bench responder").await?.nats().clone();
    let mut sub = responder.subscribe(ECHO).await?;
    let echo = tokio::spawn(async move {
        while let Some(m) = sub.next().await {
            if let Some(reply) = m.reply {
                let _ = responder.publish(reply, m.payload).await;
            }
        }
    });
    let requester = RemoteClient::connect(&cluster, "bench requester").await?.nats().clone();
    let payload = bytes_of(&params);
    let bare_once =
        || async { requester.request(ECHO, payload.clone()).await.map(|_| ()).map_err(anyhow::Error::from) };
    let bare = sample(args.calls, bare_once).await?;
    echo.abort();
    row("bare NATS request/reply (async-nats, responder in this process)", &bare);
    let apart = responder_process(&url)?;
    let bare_parts = || [usage_of(std::process::id()), usage_of(apart.0.id()), usage_of(nats_pid)];
    let before = bare_parts();
    let bare_apart = sample(args.calls, bare_once).await?;
    let bare_usage: Vec<Usage> = bare_parts().into_iter().zip(before).map(|(a, b)| a - b).collect();
    drop(apart);
    row("bare NATS request/reply (responder in a process of its own)", &bare_apart);

    let local_config = Config::parse(&role("min_warm = 4\nmax_agents = 4"), "<bench>", &dir)?;
    let local = Swarm::start(local_config).await?;
    let local_calls = sample(args.calls, || call(&local, &params)).await?;
    row("local pool (in-process swarm, `skep agent demo`)", &local_calls);
    local.shutdown().await;

    let mut workers = vec![start_worker()?];
    let (remote, remote_client) = orchestrator(&cluster, &dir, args.timeout).await?;
    wait_workers(&remote_client, 1).await?;
    let worker_pid = workers[0].0.id();
    let mut agents = children_of(worker_pid);
    agents.retain(|pid| *pid != worker_pid);
    let parts = |server_pid: u32| {
        let agents = agents.iter().map(|pid| usage_of(*pid)).fold(Usage::default(), |sum, u| sum + u);
        [usage_of(std::process::id()), usage_of(worker_pid), agents, usage_of(server_pid)]
    };
    let before = parts(nats_pid);
    let remote_calls = sample(args.calls, || call(&remote, &params)).await?;
    let after = parts(nats_pid);
    row("remote role through one `skep worker`", &remote_calls);
    // Warm-up calls (a tenth) are inside the window too.
    let n = (args.calls + args.calls / 10) as f64;
    println!("\n## per remote call: CPU time (µs) and context switches (voluntary + involuntary), {n} calls");
    let used: Vec<Usage> = after.into_iter().zip(before).map(|(a, b)| a - b).collect();
    usage_table(&["orchestrator (this bench)", "skep worker", "its agents", "nats-server"], &used, n);
    println!("\n## per bare request/reply (responder in a process of its own), the same measure, {n} requests");
    usage_table(&["requester (this bench)", "responder", "nats-server"], &bare_usage, n);
    if args.latency_only {
        remote.shutdown().await;
        drop(workers);
        let _ = std::fs::remove_dir_all(&dir);
        return Ok(());
    }

    println!("\n## throughput, {} calls, {} in flight", args.throughput_calls, args.in_flight);
    println!("| workers | calls/s |\n| --- | --- |");
    for n in 1..=3 {
        while workers.len() < n {
            workers.push(start_worker()?);
        }
        wait_workers(&remote_client, n).await?;
        let t0 = Instant::now();
        let failed = burst(&remote, &params, args.throughput_calls, args.in_flight).await;
        let rate = args.throughput_calls as f64 / t0.elapsed().as_secs_f64();
        println!("| {n} | {rate:.0}{} |", if failed > 0 { format!(" ({failed} failed)") } else { String::new() });
    }

    println!("\n## failover: SIGKILL one of 3 workers under load ({} in flight, idempotent echo)", args.in_flight);
    let load = {
        let (remote, params) = (remote.clone(), params.clone());
        let calls = args.throughput_calls;
        let in_flight = args.in_flight;
        tokio::spawn(async move { burst_timed(&remote, &params, calls, in_flight).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let killed_at = Instant::now();
    let _ = workers[0].0.kill();
    let _ = workers[0].0.wait();
    let calls = load.await?;
    let failed = calls.iter().filter(|c| !c.2).count();
    // The calls in flight at the kill: the slowest of them bounds the failover.
    let caught: Vec<Duration> =
        calls.iter().filter(|c| c.0 < killed_at && c.1 > killed_at).map(|c| c.1.duration_since(killed_at)).collect();
    let mut caught = caught;
    caught.sort_unstable();
    let ms = |q: f64| {
        caught
            .get(((caught.len() as f64 * q) as usize).min(caught.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    println!("calls: {}, failed: {failed}", calls.len());
    println!(
        "{} calls were in flight at the kill; after it they ended at p50 {:.1} ms, p90 {:.1} ms, max {:.1} ms",
        caught.len(),
        ms(0.5),
        ms(0.9),
        ms(1.0)
    );
    remote.shutdown().await;
    drop(workers);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("skep-cluster-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn bytes_of(params: &RawValue) -> bytes::Bytes {
    bytes::Bytes::copy_from_slice(params.get().as_bytes())
}

async fn orchestrator(
    cluster: &ClusterConfig,
    dir: &std::path::Path,
    timeout: Duration,
) -> anyhow::Result<(Swarm, Arc<RemoteClient>)> {
    let text = format!(
        "[cluster]\nnats = {:?}\n[roles.echo]\nremote = true\ntimeout = \"{}ms\"\nidempotent = [\"echo\"]\n",
        cluster.nats,
        timeout.as_millis()
    );
    let mut config = Config::parse(&text, "<bench>", dir)?;
    config.cluster = None;
    let client = Arc::new(RemoteClient::connect(cluster, "bench orchestrator").await?);
    let swarm = Swarm::start(config).await?;
    swarm.set_remote(client.clone());
    Ok((swarm, client))
}

async fn wait_workers(client: &RemoteClient, n: usize) -> anyhow::Result<()> {
    if !client.workers().wait_for(Duration::from_secs(30), |alive| alive.len() == n).await {
        bail!("{n} workers did not start");
    }
    Ok(())
}

async fn call(swarm: &Swarm, params: &RawValue) -> anyhow::Result<()> {
    // The cache is off (capacity 0) so every call crosses the wire.
    let options = CallOptions { bypass_cache: true, ..CallOptions::default() };
    swarm.call("echo", "echo", Some(params), options).await?;
    Ok(())
}

async fn sample<F, Fut>(n: usize, mut one: F) -> anyhow::Result<Vec<Duration>>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    for _ in 0..n / 10 {
        one().await?;
    }
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let t0 = Instant::now();
        one().await?;
        times.push(t0.elapsed());
    }
    times.sort_unstable();
    Ok(times)
}

fn row(what: &str, sorted: &[Duration]) {
    let at = |q: f64| sorted[((sorted.len() as f64 * q) as usize).min(sorted.len() - 1)].as_secs_f64() * 1e6;
    println!("| {what} | {:.0} | {:.0} | {:.0} |", at(0.5), at(0.9), at(0.99));
}

async fn burst(swarm: &Swarm, params: &RawValue, calls: usize, in_flight: usize) -> usize {
    burst_timed(swarm, params, calls, in_flight).await.iter().filter(|c| !c.2).count()
}

/// Runs `calls` calls, `in_flight` at a time; each call's start, end and whether it succeeded.
async fn burst_timed(
    swarm: &Swarm,
    params: &RawValue,
    calls: usize,
    in_flight: usize,
) -> Vec<(Instant, Instant, bool)> {
    futures::stream::iter(0..calls)
        .map(|_| async {
            let start = Instant::now();
            let ok = call(swarm, params).await.is_ok();
            (start, Instant::now(), ok)
        })
        .buffer_unordered(in_flight)
        .collect()
        .await
}

/// CPU time and context switches of a set of processes (all their threads), from /proc.
#[derive(Debug, Clone, Copy, Default)]
struct Usage {
    cpu: Duration,
    voluntary: u64,
    involuntary: u64,
}

impl std::ops::Add for Usage {
    type Output = Usage;
    fn add(self, other: Usage) -> Usage {
        Usage {
            cpu: self.cpu + other.cpu,
            voluntary: self.voluntary + other.voluntary,
            involuntary: self.involuntary + other.involuntary,
        }
    }
}

impl std::ops::Sub for Usage {
    type Output = Usage;
    fn sub(self, before: Usage) -> Usage {
        Usage {
            cpu: self.cpu.saturating_sub(before.cpu),
            voluntary: self.voluntary.saturating_sub(before.voluntary),
            involuntary: self.involuntary.saturating_sub(before.involuntary),
        }
    }
}

/// One row per process (`used` over `n` calls) and their sum.
fn usage_table(names: &[&str], used: &[Usage], n: f64) {
    let line = |name: &str, u: Usage| {
        println!("| {name} | {:.1} | {:.2} |", u.cpu.as_secs_f64() * 1e6 / n, (u.voluntary + u.involuntary) as f64 / n);
    };
    println!("| process | CPU µs | ctx switches |\n| --- | --- | --- |");
    for (name, u) in names.iter().zip(used) {
        line(name, *u);
    }
    line("all", used.iter().fold(Usage::default(), |sum, u| sum + *u));
}

/// `pid`'s usage summed over its threads (0 for a process gone).
fn usage_of(pid: u32) -> Usage {
    // SAFETY: sysconf has no preconditions.
    let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name's closing parenthesis: utime is the 12th, stime the 13th.
    let fields: Vec<&str> = stat.rsplit_once(')').map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    let cpu = Duration::from_micros((ticks(11) + ticks(12)) * 1_000_000 / tick);
    let mut usage = Usage { cpu, ..Usage::default() };
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return usage };
    for task in tasks.filter_map(Result::ok) {
        let status = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
        let field = |name: &str| {
            status.lines().find_map(|l| l.strip_prefix(name)).and_then(|v| v.trim().parse::<u64>().ok()).unwrap_or(0)
        };
        usage.voluntary += field("voluntary_ctxt_switches:");
        usage.involuntary += field("nonvoluntary_ctxt_switches:");
    }
    usage
}

/// The children of `parent`, from /proc.
fn children_of(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let ppid = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok());
            ppid == Some(parent)
        })
        .collect()
}
