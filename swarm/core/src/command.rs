//! Command roles (`protocol = "command"`): a fresh process per call, the
//! cold path and a wrapper for plain command-line tools. The call's params are
//! written to its stdin as JSON; the answer is its exit code, its stdout (also
//! decoded as `json` when it is JSON) and the tail of its stderr.

use std::time::Duration;

use serde::Serialize;
use serde_json::value::RawValue;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::agent::spawn_spec;
use crate::config::RoleConfig;
use crate::error::SwarmError;
use crate::process::{AgentProcess, describe_exit};

/// Most bytes of stdout kept; the rest is read and dropped, and said so.
const MAX_STDOUT: usize = 16 * 1024 * 1024;
/// Most bytes of stderr returned (its tail).
const MAX_STDERR: usize = 64 * 1024;
/// How long output may keep arriving after the process has exited.
const DRAIN_AFTER_EXIT: Duration = Duration::from_millis(200);

/// What a command call answers.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct CommandResult {
    /// The exit code; `null` when a signal ended it.
    exit_code: Option<i32>,
    /// "exit code 3", "killed by SIGSEGV", ...
    status: String,
    stdout: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    stdout_truncated: bool,
    stderr: String,
    /// stdout decoded, when it is one JSON value.
    #[serde(skip_serializing_if = "Option::is_none")]
    json: Option<serde_json::Value>,
}

/// Runs one call of a command role; a process still running at `timeout`
/// is killed with its whole group.
pub(crate) async fn run(
    role: &RoleConfig,
    params: Option<&RawValue>,
    timeout: Duration,
) -> Result<Box<RawValue>, SwarmError> {
    let mut process = AgentProcess::spawn(&spawn_spec(role))
        .await
        .map_err(|e| SwarmError::Start { role: role.name.clone(), reason: format!("{e:#}") })?;
    let pid = process.pid();
    let stderr = process.stderr_handle();
    let (mut stdin, stdout) = process.take_stdio().expect("a fresh process still has its pipes");
    let input = params.map_or("null", RawValue::get).as_bytes().to_vec();
    let ran = tokio::time::timeout(timeout, async {
        // A command that does not read its input must not block the call.
        let feed = tokio::spawn(async move {
            let _ = stdin.write_all(&input).await;
        });
        let mut output = tokio::spawn(read_capped(stdout));
        let status = process.exited().await;
        feed.abort();
        let output = match tokio::time::timeout(DRAIN_AFTER_EXIT, &mut output).await {
            Ok(Ok(output)) => output,
            _ => {
                output.abort();
                (Vec::new(), false)
            }
        };
        stderr.drained(DRAIN_AFTER_EXIT).await;
        (status, output)
    })
    .await;
    // Dropping the process kills its group if anything is left of it.
    drop(process);
    let Ok((status, (stdout, stdout_truncated))) = ran else {
        return Err(SwarmError::Timeout {
            role: role.name.clone(),
            agent: format!("{}/pid-{pid}", role.name),
            after: timeout,
        });
    };
    let stdout = String::from_utf8_lossy(&stdout).into_owned();
    let json = serde_json::from_str(stdout.trim()).ok();
    let result = CommandResult {
        exit_code: status.code(),
        status: describe_exit(status),
        stdout,
        stdout_truncated,
        stderr: stderr.tail(MAX_STDERR),
        json,
    };
    Ok(serde_json::value::to_raw_value(&result).expect("a command result serializes"))
}

/// All of stdout up to the cap; whether more was dropped.
async fn read_capped(mut stdout: tokio::process::ChildStdout) -> (Vec<u8>, bool) {
    let mut kept = Vec::new();
    let mut chunk = vec![0; 64 * 1024];
    let mut truncated = false;
    loop {
        match stdout.read(&mut chunk).await {
            Ok(0) | Err(_) => return (kept, truncated),
            Ok(n) => {
                let room = MAX_STDOUT - kept.len();
                kept.extend_from_slice(&chunk[..n.min(room)]);
                truncated |= n > room;
            }
        }
    }
}
