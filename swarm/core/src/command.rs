//! Command roles (`protocol = "command"`): a fresh process per call, the
//! cold path and a wrapper for plain command-line tools. The call's params are
//! written to its stdin as JSON; the answer is its exit code, its stdout (also
//! decoded as `json` when it is JSON) and the tail of its stderr.

use std::time::Duration;

use serde::Serialize;
use serde_json::value::RawValue;

use crate::config::RoleConfig;
use crate::error::SwarmError;
use crate::launch::spawn_spec;
use crate::process::{Completed, RunError, describe_exit, run_to_completion};

/// Most bytes of stderr returned (its tail).
const MAX_STDERR: usize = 64 * 1024;

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
/// is killed with its whole group before the timeout is reported.
pub(crate) async fn run(
    role: &RoleConfig,
    params: Option<&RawValue>,
    timeout: Duration,
) -> Result<Box<RawValue>, SwarmError> {
    let input = params.map_or("null", RawValue::get).as_bytes().to_vec();
    let completed = run_to_completion(&spawn_spec(role), input, Some(timeout)).await;
    let Completed { status, stdout, stdout_truncated, stderr, .. } = match completed {
        Ok(completed) => completed,
        Err(RunError::Timeout { pid, after, .. }) => {
            return Err(SwarmError::Timeout {
                role: role.name.clone(),
                agent: format!("{}/pid-{pid}", role.name),
                after,
            });
        }
        Err(RunError::Spawn(e)) => return Err(SwarmError::Start { role: role.name.clone(), reason: e.with_reason() }),
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
