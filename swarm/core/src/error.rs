//! What can go wrong with a call through the swarm, typed, and the one
//! mapping from those errors to JSON-RPC error objects.

use std::time::Duration;

use serde_json::json;
use skep_bridge::{ErrorObjectOwned, code};

use crate::breaker::BreakerState;

/// The code of a race whose every call failed (a server error in JSON-RPC's
/// implementation-defined range; each cause keeps its own code in `data`).
pub const ALL_FAILED: i32 = -32000;

/// Why a swarm call failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum SwarmError {
    /// No role by that name.
    #[error("unknown role {role:?}; known roles: {}", known.join(", "))]
    UnknownRole { role: String, known: Vec<String> },
    /// No agent became free within the role's queue timeout.
    #[error("role {role} is overloaded: no agent was free within {} ms", waited.as_millis())]
    Overloaded { role: String, waited: Duration },
    /// The role's agents kept crashing; it is failed and calls fail fast.
    #[error("role {role} has failed: its agents crashed {restarts} times within 60 s (last: {last_exit})")]
    RoleFailed { role: String, restarts: usize, last_exit: String, stderr_tail: String },
    /// The agent did not answer in time; it is being replaced.
    #[error("timeout: agent {agent} of role {role} did not answer within {} ms", after.as_millis())]
    Timeout { role: String, agent: String, after: Duration },
    /// The agent exited or closed its output during the call.
    #[error("agent {agent} of role {role} crashed during the call ({exit})")]
    AgentCrashed { role: String, agent: String, pid: u32, exit: String, stderr_tail: String },
    /// The agent answered with an error; it is passed on unchanged.
    #[error("the agent answered with error {}: {}", .0.code(), .0.message())]
    Agent(ErrorObjectOwned),
    /// The role's circuit breaker is open: calls fail fast until it probes again.
    #[error("circuit open for role {role}: calls fail fast; retry in {} ms", retry_after.as_millis())]
    CircuitOpen { role: String, state: BreakerState, retry_after: Duration, last_failure: Option<String> },
    /// The swarm is shutting down.
    #[error("shutting down: the call was not run")]
    ShuttingDown,
    /// No role's `route` patterns match the text.
    #[error("no role matches {text:?}; roles and their route patterns: {}", describe_routes(routes))]
    NoRoute { text: String, routes: Vec<(String, Vec<String>)> },
    /// Every call of a race failed.
    #[error("all {} calls of the race failed", causes.len())]
    AllFailed { causes: Vec<ErrorObjectOwned> },
    /// An agent could not be started at all.
    #[error("cannot start an agent for role {role}: {reason}")]
    Start { role: String, reason: String },
    /// A remote role has no worker serving it: nothing ran.
    #[error("no worker serves role {role}: the call was not run")]
    NoWorkers { role: String },
    /// A remote call got no answer: the worker may have died with it, so it
    /// may have run; it is retried only when the method is idempotent.
    #[error("no answer for role {role} within {} ms: {reason}; the call may have run (not retried: {method} is not idempotent)", after.as_millis())]
    RemoteLost { role: String, method: String, after: Duration, reason: String },
}

impl SwarmError {
    /// The JSON-RPC code this error is answered with.
    pub fn code(&self) -> i32 {
        match self {
            SwarmError::UnknownRole { .. } | SwarmError::NoRoute { .. } => code::INVALID_PARAMS,
            SwarmError::AllFailed { .. } => ALL_FAILED,
            SwarmError::Overloaded { .. } => code::OVERLOADED,
            SwarmError::RoleFailed { .. }
            | SwarmError::AgentCrashed { .. }
            | SwarmError::Start { .. }
            | SwarmError::NoWorkers { .. } => code::AGENT_CRASHED,
            SwarmError::Timeout { .. } | SwarmError::RemoteLost { .. } => code::TIMEOUT,
            SwarmError::CircuitOpen { .. } => code::CIRCUIT_OPEN,
            SwarmError::Agent(e) => e.code(),
            SwarmError::ShuttingDown => code::SHUTTING_DOWN,
        }
    }

    /// The error object sent to callers: the message says what happened, the
    /// data says what to look at.
    pub fn to_error_object(&self) -> ErrorObjectOwned {
        let data = match self {
            SwarmError::Agent(e) => return e.clone(),
            SwarmError::UnknownRole { known, .. } => Some(json!({ "knownRoles": known })),
            SwarmError::Overloaded { role, waited } => Some(json!({
                "role": role, "waitedMs": waited.as_millis() as u64,
                "hint": "raise max_agents or queue_timeout for this role, or send fewer calls at once",
            })),
            SwarmError::RoleFailed { role, restarts, last_exit, stderr_tail } => Some(json!({
                "role": role, "restarts": restarts, "exitStatus": last_exit, "stderrTail": stderr_tail,
                "hint": "fix the agent (see stderrTail), then restart skep",
            })),
            SwarmError::Timeout { role, agent, after } => Some(json!({
                "role": role, "agent": agent, "timeoutMs": after.as_millis() as u64,
            })),
            SwarmError::AgentCrashed { role, agent, pid, exit, stderr_tail } => Some(json!({
                "role": role, "agent": agent, "pid": pid, "exitStatus": exit, "stderrTail": stderr_tail,
            })),
            SwarmError::Start { role, reason } => Some(json!({ "role": role, "reason": reason })),
            SwarmError::NoWorkers { role } => Some(json!({
                "role": role, "hint": "start `skep worker` with this role on a host of the cluster",
            })),
            SwarmError::RemoteLost { role, method, after, reason } => Some(json!({
                "role": role, "method": method, "timeoutMs": after.as_millis() as u64, "reason": reason,
                "mayHaveRun": true,
                "hint": "declare the method idempotent for the role if running it twice is harmless",
            })),
            SwarmError::NoRoute { routes, .. } => {
                let routes: serde_json::Map<String, serde_json::Value> =
                    routes.iter().map(|(role, patterns)| (role.clone(), json!(patterns))).collect();
                Some(json!({ "routes": routes }))
            }
            SwarmError::AllFailed { causes } => {
                let causes: Vec<_> =
                    causes.iter().enumerate().map(|(index, e)| json!({ "index": index, "error": e })).collect();
                Some(json!({ "causes": causes }))
            }
            SwarmError::ShuttingDown => None,
            SwarmError::CircuitOpen { role, state, retry_after, last_failure } => Some(json!({
                "role": role,
                "state": state,
                "retryAfterMs": retry_after.as_millis().max(1) as u64,
                "lastFailure": last_failure,
            })),
        };
        ErrorObjectOwned::owned(self.code(), self.to_string(), data)
    }
}

fn describe_routes(routes: &[(String, Vec<String>)]) -> String {
    let described: Vec<String> = routes
        .iter()
        .map(|(role, patterns)| match patterns.is_empty() {
            true => format!("{role} (none)"),
            false => format!("{role} {patterns:?}"),
        })
        .collect();
    described.join(", ")
}
