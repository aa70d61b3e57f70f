//! Running contenders alternately, and the process plumbing they share.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, bail};
use serde::Deserialize;
use serde_json::value::RawValue;
use skep_benches::summary::{Metric, Results, Scenario, Side};
use skep_bridge::{Client, ClientConfig, Framing, RequestOptions};
use tokio::process::{Child, Command};

use crate::setup::Env;

/// How much to measure.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// The smoke-check sizes.
    pub quick: bool,
}

impl Plan {
    /// `full` normally, `quick` with --quick.
    pub fn pick<T>(self, full: T, quick: T) -> T {
        if self.quick { quick } else { full }
    }
}

/// A boxed future, so contenders can be listed together.
pub type Fut<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// A scenario's entry point.
pub type ScenarioFn = for<'a> fn(&'a Env, Plan) -> Fut<'a, anyhow::Result<Scenario>>;

/// What one round of a contender produced: samples per metric key, or why it cannot run.
#[derive(Debug)]
pub enum Outcome {
    /// Samples (nanoseconds, or KiB for memory) per metric key.
    Samples(BTreeMap<String, Vec<u64>>),
    /// The contender cannot run here; the reason goes in the table.
    Skipped(String),
}

impl Outcome {
    /// One metric's samples.
    pub fn one(key: &str, samples: Vec<u64>) -> Outcome {
        Outcome::Samples(BTreeMap::from([(key.to_owned(), samples)]))
    }
}

/// One row of a scenario: how to run a round of it.
pub struct Contender<'a> {
    /// The row's name.
    pub name: String,
    /// skep or a peer.
    pub side: Side,
    /// For overhead metrics: the work an ideal orchestrator would still take.
    pub work: Option<Duration>,
    /// Runs one round.
    pub round: Box<dyn FnMut() -> Fut<'a, anyhow::Result<Outcome>> + 'a>,
}

impl<'a> Contender<'a> {
    /// A contender whose rounds are `round()`.
    pub fn new<F>(name: &str, side: Side, round: F) -> Self
    where
        F: FnMut() -> Fut<'a, anyhow::Result<Outcome>> + 'a,
    {
        Contender { name: name.to_owned(), side, work: None, round: Box::new(round) }
    }

    /// Sets the work that overheads are shares of.
    pub fn work(mut self, work: Duration) -> Self {
        self.work = Some(work);
        self
    }
}

/// Runs `rounds` rounds; in each, every contender once, in alternating order
/// (forward on even rounds, backward on odd ones) so none always goes first.
pub async fn run(
    title: &str,
    metrics: Vec<Metric>,
    mut contenders: Vec<Contender<'_>>,
    rounds: usize,
) -> anyhow::Result<Scenario> {
    let mut results: Vec<Results> = contenders
        .iter()
        .map(|c| Results {
            name: c.name.clone(),
            side: c.side,
            rounds: metrics.iter().map(|m| (m.key, Vec::new())).collect(),
            skipped: None,
            work_ns: c.work.map(|w| w.as_nanos() as u64),
        })
        .collect();
    for round in 0..rounds {
        let mut order: Vec<usize> = (0..contenders.len()).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for i in order {
            if results[i].skipped.is_some() {
                continue;
            }
            eprintln!("   round {}/{rounds}: {}", round + 1, contenders[i].name);
            let outcome = (contenders[i].round)().await.with_context(|| contenders[i].name.clone())?;
            match outcome {
                Outcome::Skipped(why) => results[i].skipped = Some(why),
                Outcome::Samples(mut samples) => {
                    for metric in &metrics {
                        let got = samples.remove(metric.key).unwrap_or_default();
                        results[i].rounds.get_mut(metric.key).expect("every metric has a slot").push(got);
                    }
                }
            }
        }
    }
    Ok(Scenario { title: title.to_owned(), metrics, contenders: results })
}

/// A child with piped stdin and stdout (stderr inherited), killed if dropped.
pub fn spawn(program: &str, args: &[&str]) -> anyhow::Result<Child> {
    Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {program} {args:?}"))
}

/// A bridge client on a child's pipes.
pub fn client(child: &mut Child, framing: Framing) -> anyhow::Result<Client> {
    let stdin = child.stdin.take().context("stdin is piped")?;
    let stdout = child.stdout.take().context("stdout is piped")?;
    let config = ClientConfig { framing, timeout: Duration::from_secs(120), ..ClientConfig::default() };
    Ok(Client::connect(stdout, stdin, config))
}

/// Calls `method` and returns its result, failing on any error.
pub async fn call(client: &Client, method: &str, params: &str) -> anyhow::Result<Box<RawValue>> {
    let params = RawValue::from_string(params.to_owned()).context("params are JSON")?;
    client.call_raw(method, Some(&params), RequestOptions::default()).await.with_context(|| format!("calling {method}"))
}

/// Closes a child's stdin (dropping the client) and waits for it to exit.
pub async fn finish(mut child: Child, client: Client) -> anyhow::Result<()> {
    drop(client);
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .context("the child did not exit within 30 s of its stdin closing")??;
    if !status.success() {
        bail!("the child exited with {status}");
    }
    Ok(())
}

#[derive(Deserialize)]
struct DriverReport {
    metrics: Option<BTreeMap<String, Vec<u64>>>,
    skipped: Option<String>,
}

/// Runs a driver script to its end and reads its one JSON report from stdout.
pub async fn driver(program: &str, args: &[&str]) -> anyhow::Result<Outcome> {
    driver_with(program, args, &[]).await
}

/// `driver` with extra environment variables.
pub async fn driver_with(program: &str, args: &[&str], vars: &[(&str, &str)]) -> anyhow::Result<Outcome> {
    let out = Command::new(program)
        .args(args)
        .envs(vars.iter().copied())
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .output()
        .await
        .with_context(|| format!("running {program} {args:?}"))?;
    if !out.status.success() {
        bail!("{program} {args:?} failed: {}", out.status);
    }
    let report: DriverReport =
        serde_json::from_slice(&out.stdout).with_context(|| format!("reading the report of {program} {args:?}"))?;
    match (report.metrics, report.skipped) {
        (_, Some(why)) => Ok(Outcome::Skipped(why)),
        (Some(metrics), None) => Ok(Outcome::Samples(metrics)),
        (None, None) => bail!("{program} {args:?} reported neither metrics nor a skip"),
    }
}

/// Nanoseconds since `start`.
pub fn since(start: std::time::Instant) -> u64 {
    start.elapsed().as_nanos() as u64
}

/// A TOML string literal.
pub fn toml_str(s: &str) -> String {
    serde_json::to_string(s).expect("a string serializes")
}
