//! Scenario 1: bridge round trip and pipelined throughput, 100 B payload.
//!
//! Rows: skep's bridge (`Client` → `bridge-echo`), `skep serve` relaying to
//! the same echo as its agent (two hops), the raw pipe floor (`raw-echo`),
//! the two-hop floor (`raw-relay` in front of `raw-echo`: what `skep serve`'s
//! two hops cost the pipes and the scheduler, parsing nothing), jsonrpsee's own client and dispatch (`jsonrpsee-echo`), and
//! vscode-jsonrpc Node ↔ Node (`peers/vscode_client.js`).

use std::future::Future;
use std::time::Instant;

use anyhow::Context as _;
use futures::{StreamExt as _, TryStreamExt as _};
use jsonrpsee::core::client::{ClientBuilder, ClientT as _, ReceivedMessage, TransportReceiverT, TransportSenderT};
use jsonrpsee::core::traits::ToRpcParams;
use serde_json::value::RawValue;
use skep_benches::raw::raw_pipelined;
use skep_benches::summary::{Metric, Scenario, Side, Unit};
use skep_bridge::Framing;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::process::{ChildStdin, ChildStdout};

use crate::runner::{self, Contender, Fut, Outcome, Plan, since, spawn, toml_str};
use crate::setup::Env;

/// Calls in flight in the pipelined metric.
const WINDOW: usize = 128;
/// Calls per pipelined sample.
const BATCH: usize = 1024;
/// `{"text":"xxx…"}`: exactly 100 bytes of JSON.
fn params() -> String {
    format!("{{\"text\":\"{}\"}}", "x".repeat(89))
}

#[derive(Clone, Copy)]
struct Sizes {
    round_trips: usize,
    batches: usize,
}

/// Scenario 1's entry point.
pub fn scenario(env: &Env, plan: Plan) -> Fut<'_, anyhow::Result<Scenario>> {
    Box::pin(async move {
        let sizes = Sizes { round_trips: plan.pick(2000, 300), batches: plan.pick(10, 3) };
        let config = env.scratch_file(
            "echo-role.toml",
            &format!(
                "[roles.echo]\ncommand = [{}]\nmin_warm = 1\nmax_agents = 1\nconcurrency = 128\n",
                toml_str(&env.exe("bridge-echo"))
            ),
        )?;
        let config = config.display().to_string();
        let metrics = vec![
            Metric { key: "rt", label: "round trip, 100 B, 1 in flight", unit: Unit::Nanos, share_of_work: false },
            Metric { key: "batch", label: "1,024 calls, 128 in flight", unit: Unit::Batch(1024), share_of_work: false },
        ];
        let contenders = vec![
            Contender::new("skep bridge: Client → bridge-echo", Side::Skep, move || {
                Box::pin(skep_bridge_round(env, sizes))
            }),
            Contender::new("skep serve: swarm/call → bridge-echo agent (2 hops)", Side::Skep, {
                let config = config.clone();
                move || Box::pin(sidecar_round(env, config.clone(), sizes))
            }),
            Contender::new("raw pipe echo, Rust (the floor)", Side::Peer, move || {
                Box::pin(raw_round(env, false, sizes))
            }),
            Contender::new("raw pipe relay → raw pipe echo, Rust (the two-hop floor)", Side::Peer, move || {
                Box::pin(raw_round(env, true, sizes))
            }),
            Contender::new("jsonrpsee client + server, Rust", Side::Peer, move || {
                Box::pin(jsonrpsee_round(env, sizes))
            }),
            Contender::new("vscode-jsonrpc, Node ↔ Node", Side::Peer, move || {
                Box::pin(async move {
                    let script = env.peer("vscode_client.js");
                    let (n, b) = (sizes.round_trips.to_string(), sizes.batches.to_string());
                    runner::driver("node", &[&script, &n, &b]).await
                })
            }),
        ];
        runner::run("1 bridge", metrics, contenders, plan.pick(5, 2)).await
    })
}

/// Times `sizes.round_trips` sequential calls and `sizes.batches` windows of
/// `BATCH` calls with `WINDOW` in flight, after an untimed warm-up.
async fn measure<F, R>(call: F, sizes: Sizes) -> anyhow::Result<Outcome>
where
    F: Fn() -> R,
    R: Future<Output = anyhow::Result<()>>,
{
    for _ in 0..200 {
        call().await?;
    }
    let window = |calls: usize| {
        futures::stream::iter(0..calls).map(|_| call()).buffer_unordered(WINDOW).try_for_each(|()| async { Ok(()) })
    };
    window(BATCH).await?;
    let mut rt = Vec::with_capacity(sizes.round_trips);
    for _ in 0..sizes.round_trips {
        let start = Instant::now();
        call().await?;
        rt.push(since(start));
    }
    let mut batch = Vec::with_capacity(sizes.batches);
    for _ in 0..sizes.batches {
        let start = Instant::now();
        window(BATCH).await?;
        batch.push(since(start));
    }
    Ok(Outcome::Samples([("rt".to_owned(), rt), ("batch".to_owned(), batch)].into()))
}

async fn skep_bridge_round(env: &Env, sizes: Sizes) -> anyhow::Result<Outcome> {
    let mut child = spawn(&env.exe("bridge-echo"), &[])?;
    let client = runner::client(&mut child, Framing::Newline)?;
    let p = params();
    let outcome = measure(|| async { runner::call(&client, "echo", &p).await.map(drop) }, sizes).await?;
    runner::finish(child, client).await?;
    Ok(outcome)
}

async fn sidecar_round(env: &Env, config: String, sizes: Sizes) -> anyhow::Result<Outcome> {
    let mut child = spawn(&env.exe("skep"), &["serve", "--config", &config])?;
    let client = runner::client(&mut child, Framing::Newline)?;
    let call = format!("{{\"role\":\"echo\",\"method\":\"echo\",\"params\":{}}}", params());
    let outcome = measure(|| async { runner::call(&client, "swarm/call", &call).await.map(drop) }, sizes).await?;
    runner::finish(child, client).await?;
    Ok(outcome)
}

/// The request line a client would send, so the floor moves the same bytes.
fn request_line() -> Vec<u8> {
    format!("{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"echo\",\"params\":{}}}\n", params()).into_bytes()
}

/// The floor: `raw-echo` alone, or behind `raw-relay` (two hops).
async fn raw_round(env: &Env, relay: bool, sizes: Sizes) -> anyhow::Result<Outcome> {
    let echo = env.exe("raw-echo");
    let mut child = if relay { spawn(&env.exe("raw-relay"), &[&echo])? } else { spawn(&echo, &[])? };
    let mut stdin = child.stdin.take().context("stdin is piped")?;
    let mut stdout = child.stdout.take().context("stdout is piped")?;
    let line = request_line();
    let mut reader = BufReader::new(&mut stdout);
    let mut reply = Vec::with_capacity(256);
    let mut rt = Vec::with_capacity(sizes.round_trips);
    for i in 0..200 + sizes.round_trips {
        let start = Instant::now();
        stdin.write_all(&line).await?;
        reader.read_until(b'\n', &mut reply).await?;
        anyhow::ensure!(reply.len() == line.len(), "raw-echo returned {} bytes for {}", reply.len(), line.len());
        reply.clear();
        if i >= 200 {
            rt.push(since(start));
        }
    }
    anyhow::ensure!(reader.buffer().is_empty(), "raw-echo sent more than it was sent");
    drop(reader);
    raw_pipelined(&mut stdin, &mut stdout, &line, BATCH, WINDOW).await?;
    let mut batch = Vec::with_capacity(sizes.batches);
    for _ in 0..sizes.batches {
        let start = Instant::now();
        raw_pipelined(&mut stdin, &mut stdout, &line, BATCH, WINDOW).await?;
        batch.push(since(start));
    }
    drop(stdin);
    child.wait().await?;
    Ok(Outcome::Samples([("rt".to_owned(), rt), ("batch".to_owned(), batch)].into()))
}

/// jsonrpsee's client transport, writing newline frames to a child's stdin.
struct PipeSender(ChildStdin);
/// jsonrpsee's client transport, reading newline frames from a child's stdout.
struct PipeReceiver(BufReader<ChildStdout>);

impl TransportSenderT for PipeSender {
    type Error = std::io::Error;

    async fn send(&mut self, mut msg: String) -> Result<(), Self::Error> {
        msg.push('\n');
        self.0.write_all(msg.as_bytes()).await
    }
}

impl TransportReceiverT for PipeReceiver {
    type Error = std::io::Error;

    async fn receive(&mut self) -> Result<ReceivedMessage, Self::Error> {
        let mut line = String::new();
        if self.0.read_line(&mut line).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        Ok(ReceivedMessage::Text(line))
    }
}

/// Params already encoded, handed to jsonrpsee's client as they are.
struct Raw<'a>(&'a RawValue);

impl ToRpcParams for Raw<'_> {
    fn to_rpc_params(self) -> Result<Option<Box<RawValue>>, serde_json::Error> {
        Ok(Some(self.0.to_owned()))
    }
}

async fn jsonrpsee_round(env: &Env, sizes: Sizes) -> anyhow::Result<Outcome> {
    let mut child = spawn(&env.exe("jsonrpsee-echo"), &[])?;
    let stdin = child.stdin.take().context("stdin is piped")?;
    let stdout = child.stdout.take().context("stdout is piped")?;
    let client = ClientBuilder::default()
        .max_concurrent_requests(WINDOW * 2)
        .build_with_tokio(PipeSender(stdin), PipeReceiver(BufReader::new(stdout)));
    let p = RawValue::from_string(params())?;
    let outcome = measure(
        || async {
            let _: Box<RawValue> = client.request("echo", Raw(&p)).await?;
            Ok(())
        },
        sizes,
    )
    .await?;
    drop(client);
    child.wait().await?;
    Ok(outcome)
}
