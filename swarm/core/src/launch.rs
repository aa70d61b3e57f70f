//! One agent: starting it (process, connection, optional handshake) and the
//! task that owns its process until it has exited.
//!
//! The pool's supervisor holds an [`Agent`]; the process itself belongs to the
//! agent's watch task, which is the only one that stops or reaps it. Dropping
//! the `Agent` (or calling [`Agent::stop`]) asks that task to run the stop
//! ladder; an exit of any kind is reported back exactly once.

use std::time::Duration;

use serde_json::value::RawValue;
use skep_bridge::{CancelStyle, Client, ClientConfig, Framing, RequestOptions};
use tokio::sync::{oneshot, watch};

use crate::config::{Handshake, RoleConfig};
use crate::process::{ChildProcess, SpawnSpec, StopOutcome, describe_exit};
use crate::stderr_ring::StderrTail;

/// The MCP protocol revision skep asks for; servers answer with the one they speak.
const MCP_PROTOCOL_VERSION: &str = "2025-06-18";

/// How long each step of the stop ladder waits for the agent to exit.
pub(crate) const STOP_GRACE: Duration = Duration::from_secs(2);
/// How much stderr goes into error messages.
pub(crate) const TAIL_BYTES: usize = 2 * 1024;

/// A started agent, as its supervisor holds it.
#[derive(Debug)]
pub(crate) struct Agent {
    pub client: Client,
    pub pid: u32,
    pub stderr: StderrTail,
    /// The agent's exit, described, once it has exited.
    pub exit: watch::Receiver<Option<String>>,
    stop: Option<oneshot::Sender<Duration>>,
}

impl Agent {
    /// Asks the watch task to run the stop ladder.
    pub(crate) fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(STOP_GRACE);
        }
    }

    /// Asks the watch task to kill the agent's group now (a stop ladder without grace).
    pub(crate) fn kill(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(Duration::ZERO);
        }
    }
}

/// How an agent's process ended.
#[derive(Debug)]
pub(crate) struct Exit {
    /// "exit code 3", "killed by SIGKILL", ...
    pub status: String,
    /// Whether skep asked it to stop (or it exited on stdin EOF when asked).
    pub expected: bool,
    pub stderr_tail: String,
}

/// Why an agent could not be started.
#[derive(Debug)]
pub(crate) struct StartFailure {
    pub reason: String,
    pub stderr_tail: String,
}

/// Starts an agent of `role`; `on_exit` is called once when its process ends.
pub(crate) async fn start(
    role: &RoleConfig,
    on_exit: impl FnOnce(Exit) + Send + 'static,
) -> Result<Agent, StartFailure> {
    let mut process = ChildProcess::spawn(&spawn_spec(role))
        .await
        .map_err(|e| StartFailure { reason: e.with_reason(), stderr_tail: String::new() })?;
    let (stdin, stdout) = process.take_stdio().expect("a fresh process still has its pipes");
    let cancel = match role.handshake {
        Handshake::Mcp => CancelStyle::Mcp,
        Handshake::None | Handshake::Initialize => CancelStyle::Lsp,
    };
    let config = ClientConfig { framing: Framing::Newline, timeout: role.timeout, cancel, ..ClientConfig::default() };
    let client = match role.handshake {
        // An MCP server names progress by token, not by request id: the token's watcher gets it.
        // Its list changes name no request: they go out with the role's name.
        Handshake::Mcp => {
            let role = role.name.clone();
            Client::builder(config)
                .on_notification(move |n| crate::mcp_notify::deliver(&role, n))
                .connect(stdout, stdin)
        }
        Handshake::None | Handshake::Initialize => Client::connect(stdout, stdin, config),
    };
    if role.handshake != Handshake::None
        && let Err(reason) = handshake(role, &client, &mut process).await
    {
        let stderr_tail = process.stderr_tail(TAIL_BYTES);
        client.close();
        process.stop(STOP_GRACE).await;
        return Err(StartFailure { reason, stderr_tail });
    }
    let (stop_tx, stop_rx) = oneshot::channel();
    let (exit_tx, exit_rx) = watch::channel(None);
    let agent = Agent {
        client: client.clone(),
        pid: process.pid(),
        stderr: process.stderr_handle(),
        exit: exit_rx,
        stop: Some(stop_tx),
    };
    tokio::spawn(async move {
        let exit = watch_until_exit(process, client, stop_rx).await;
        let _ = exit_tx.send(Some(exit.status.clone()));
        on_exit(exit);
    });
    Ok(agent)
}

/// What to start for one process of `role` (an agent, or a command role's call).
pub(crate) fn spawn_spec(role: &RoleConfig) -> SpawnSpec {
    SpawnSpec {
        role: role.name.clone(),
        command: role.argv(),
        cwd: role.cwd.clone(),
        env: role.env.clone(),
        env_passthrough: role.env_passthrough.clone(),
        rlimits: role.rlimits,
    }
}

/// Warns once, when a role's pool starts, if its program is a bare name that
/// is not on the PATH its processes get: every start would then fail with "No
/// such file or directory", and this says so before the first call does.
pub(crate) fn warn_if_not_on_path(role: &RoleConfig) {
    let argv = role.argv();
    let Some(program) = argv.first().filter(|p| !p.contains('/')) else { return };
    // The PATH the child gets: the role's own, else ours when passed through.
    let passed = role.env_passthrough.iter().any(|name| name == "PATH");
    let path = role.env.get("PATH").cloned().or_else(|| passed.then(|| std::env::var("PATH").ok()).flatten());
    let Some(path) = path else { return };
    let cwd = role.cwd.clone().or_else(|| std::env::current_dir().ok()).unwrap_or_default();
    if which::which_in(program, Some(&path), cwd).is_err() {
        tracing::warn!(
            role = %role.name,
            %program,
            %path,
            "{program:?} is not on the PATH role {} runs with, so its agents cannot start: \
             give the program's full path, or set PATH in [roles.{}.env]",
            role.name,
            role.name
        );
    }
}

/// `initialize` must be answered before the agent counts as ready; an MCP
/// server is then told `notifications/initialized`, as its spec requires.
async fn handshake(role: &RoleConfig, client: &Client, process: &mut ChildProcess) -> Result<(), String> {
    let version = env!("CARGO_PKG_VERSION");
    let params = match role.handshake {
        Handshake::Mcp => format!(
            r#"{{"protocolVersion":"{MCP_PROTOCOL_VERSION}","capabilities":{{}},"clientInfo":{{"name":"skep","version":"{version}"}}}}"#
        ),
        Handshake::None | Handshake::Initialize => format!(r#"{{"client":"skep","version":"{version}"}}"#),
    };
    let params = RawValue::from_string(params).expect("static JSON");
    let options = RequestOptions { timeout: Some(role.startup_timeout) };
    tokio::select! {
        answered = client.call_raw("initialize", Some(&params), options) => match answered {
            Ok(_) if role.handshake == Handshake::Mcp => {
                client.notify("notifications/initialized", None).await.map_err(|e| format!("cannot confirm initialization: {e}"))
            }
            Ok(_) => Ok(()),
            Err(e) => Err(format!("initialize failed: {e}")),
        },
        status = process.exited() => Err(format!("exited during start-up ({})", describe_exit(status))),
    }
}

/// Owns the process until it ends: on its own, because its output closed, or
/// because a stop was asked for (or the supervisor dropped the agent).
async fn watch_until_exit(mut process: ChildProcess, client: Client, stop: oneshot::Receiver<Duration>) -> Exit {
    let stderr = process.stderr_handle();
    let (outcome, expected) = tokio::select! {
        status = process.exited() => (StopOutcome::AlreadyExited(status), false),
        asked = stop => {
            client.close();
            (process.stop(asked.unwrap_or(STOP_GRACE)).await, true)
        }
        () = client.disconnected() => {
            // Its output closed but it lives on: useless, so stop it.
            client.close();
            (process.stop(STOP_GRACE).await, false)
        }
    };
    // A grandchild may hold stdout open after the agent died: calls must not
    // wait for an EOF that will never come.
    client.close();
    stderr.drained(Duration::from_millis(100)).await;
    let status = describe_exit(outcome.status());
    let stopped_how = match outcome {
        StopOutcome::ExitedOnEof(_) | StopOutcome::AlreadyExited(_) => status,
        StopOutcome::Terminated(_) | StopOutcome::Killed(_) => format!("{status} (stop ladder)"),
    };
    Exit { status: stopped_how, expected, stderr_tail: stderr.tail(TAIL_BYTES) }
}
