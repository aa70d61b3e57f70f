//! `skep call`: one call through the config's daemon (started on first use),
//! or with `--no-daemon` through a `skep serve` child, the same way any
//! program would use the sidecar; the result on stdout.

use std::path::PathBuf;
use std::process::{ExitCode, ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Serialize;
use serde_json::value::RawValue;
use skep_bridge::{CallError, Client, ClientConfig, ErrorObjectOwned, RequestOptions};
use tokio::process::{Child, Command};

use crate::daemon::attach::{attach, no_daemon, target};
use crate::output::{compact, emit};
use crate::runtime::runtime;

/// Make one call through the config's warm daemon and print its result on stdout.
///
/// The daemon is started on first use and stays warm for the next call (see
/// `skep up`). On an error reply, prints `error CODE: MESSAGE` and its data to
/// stderr and exits 1; a bad command line exits 2; exits 75 if the daemon
/// went away before answering (run the call again: a fresh daemon starts).
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  skep call demo echo '{\"a\":1}'                  # prints {\"a\":1}
  skep call demo wordcount '{\"text\":\"a b c\"}'
  skep call --config skep.toml --timeout-ms 5000 reviewer review '{\"path\":\"src/lib.rs\"}'
  skep call --no-daemon demo echo '[1]'            # a throw-away orchestrator, nothing left running")]
pub struct CallArgs {
    /// The roles to call into (skep.toml); without it, the nearest skep.toml
    /// from here up, else the built-in role `demo`.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Start a throw-away orchestrator for this one call instead of using the
    /// daemon (also SKEP_NO_DAEMON=1).
    #[arg(long)]
    pub no_daemon: bool,
    /// Fail with -32001 if the agent has not answered within N ms (default: the role's timeout).
    #[arg(long, value_name = "N")]
    pub timeout_ms: Option<u64>,
    /// The role whose agent takes the call.
    pub role: String,
    /// The agent's method.
    pub method: String,
    /// The params: a JSON object or array.
    #[arg(value_parser = params_json)]
    pub params_json: Option<Box<RawValue>>,
}

/// Parses PARAMS_JSON before anything is spawned, so a typo costs nothing.
fn params_json(text: &str) -> Result<Box<RawValue>, String> {
    let raw: Box<RawValue> = serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?;
    match raw.get().as_bytes().first() {
        // Compacted: a newline inside would end a newline-delimited frame early.
        Some(b'{' | b'[') => Ok(RawValue::from_string(compact(raw.get())).expect("compacting keeps JSON valid")),
        _ => Err("JSON-RPC params must be an object or an array, such as '{\"text\":\"hi\"}' or '[1,2]'".into()),
    }
}

/// The sidecar enforces the call's deadline (`--timeout-ms` or the role's);
/// this one only keeps the client's from being infinite. A sidecar that dies
/// fails the call at once, without waiting for it.
const BACKSTOP: Duration = Duration::from_secs(24 * 60 * 60);

/// How long the sidecar may take to stop its agents once its input closes
/// (the stop ladder takes at most 4 s per agent, in parallel).
const EXIT_GRACE: Duration = Duration::from_secs(10);

/// `swarm/call` params, with the user's params passed through undecoded.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SwarmCall<'a> {
    role: &'a str,
    method: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    params: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    timeout_ms: Option<u64>,
}

/// Makes the call; exit code 1 for an error reply.
pub fn run(args: CallArgs) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(call(args))
}

/// `skep call`'s exit status when the daemon went away before answering.
pub const DAEMON_GONE: u8 = 75;

async fn call(args: CallArgs) -> anyhow::Result<ExitCode> {
    let config = target(args.config.as_deref())?;
    if no_daemon(args.no_daemon) {
        return call_sidecar(args, config).await;
    }
    let client = attach(config.as_deref()).await?;
    let options = RequestOptions { timeout: Some(BACKSTOP) };
    let reply = client.call_raw("swarm/call", Some(&encode(&args)?), options).await;
    match reply {
        Err(CallError::Disconnected) => {
            eprintln!(
                "skep: the daemon closed the connection before answering (stopped or killed); \
                 run the call again to start a fresh one"
            );
            Ok(ExitCode::from(DAEMON_GONE))
        }
        reply => answer(reply),
    }
}

fn encode(args: &CallArgs) -> anyhow::Result<Box<RawValue>> {
    serde_json::value::to_raw_value(&SwarmCall {
        role: &args.role,
        method: &args.method,
        params: args.params_json.as_deref(),
        timeout_ms: args.timeout_ms,
    })
    .context("cannot encode the swarm/call params")
}

/// Prints a result, or reports an error reply and exits 1.
fn answer(reply: Result<Box<RawValue>, CallError>) -> anyhow::Result<ExitCode> {
    match reply {
        Ok(result) => {
            emit(&compact(result.get()))?;
            Ok(ExitCode::SUCCESS)
        }
        Err(CallError::Rpc(error)) => {
            report(&error);
            Ok(ExitCode::FAILURE)
        }
        Err(other) => Err(other).context("the call failed"),
    }
}

async fn call_sidecar(args: CallArgs, config: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let request = encode(&args)?;
    let mut sidecar = spawn_sidecar(config.as_deref())?;
    let stdin = sidecar.stdin.take().expect("stdin was set to piped");
    let stdout = sidecar.stdout.take().expect("stdout was set to piped");
    let client = Client::connect(stdout, stdin, ClientConfig::default());
    let options = RequestOptions { timeout: Some(BACKSTOP) };
    let reply = client.call_raw("swarm/call", Some(&request), options).await;
    // Closing the sidecar's input is how it is asked to stop its agents and exit.
    drop(client);
    let status = wait_bounded(&mut sidecar).await?;
    if !status.success() && reply.is_ok() {
        tracing::warn!(%status, "skep serve answered, then exited with a failure");
    }
    match reply {
        // Its own stderr, inherited, has already said why.
        Err(CallError::Disconnected) => bail!("skep serve exited ({status}) before answering"),
        reply => answer(reply),
    }
}

fn spawn_sidecar(config: Option<&std::path::Path>) -> anyhow::Result<Child> {
    let exe = std::env::current_exe().context("cannot find skep's own executable")?;
    let mut command = Command::new(exe);
    command.arg("serve");
    if let Some(config) = config {
        command.arg("--config").arg(config);
    }
    // kill_on_drop: if this process fails midway, the sidecar does not linger
    // (its agents follow it through their parent-death signal).
    command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::inherit()).kill_on_drop(true);
    command.spawn().context("cannot start skep serve")
}

/// Waits for the sidecar to stop its agents and exit; kills it if it takes too long.
async fn wait_bounded(sidecar: &mut Child) -> anyhow::Result<ExitStatus> {
    if let Ok(status) = tokio::time::timeout(EXIT_GRACE, sidecar.wait()).await {
        return status.context("cannot wait for skep serve");
    }
    tracing::warn!("skep serve did not exit within {} s of its input closing; killing it", EXIT_GRACE.as_secs());
    sidecar.kill().await.context("cannot kill skep serve")?;
    sidecar.wait().await.context("cannot wait for skep serve")
}

/// `error CODE: MESSAGE`, then the data, on stderr: for a person to read.
fn report(error: &ErrorObjectOwned) {
    eprintln!("error {}: {}", error.code(), error.message());
    if let Some(data) = error.data() {
        let pretty = serde_json::from_str::<serde_json::Value>(data.get())
            .and_then(|value| serde_json::to_string_pretty(&value))
            .unwrap_or_else(|_| data.get().to_owned());
        eprintln!("{pretty}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_must_be_json_objects_or_arrays() {
        assert_eq!(params_json(" {\"b\": 1,\n\"a\": 2} ").unwrap().get(), r#"{"b":1,"a":2}"#);
        assert!(params_json("{").unwrap_err().contains("not valid JSON"));
        assert!(params_json("42").unwrap_err().contains("object or an array"));
    }
}
