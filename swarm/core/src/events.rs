//! What happens in the swarm, as typed events on a broadcast channel. The grid,
//! the Node package and `events/subscribe` are views of this stream.

use serde::Serialize;

use crate::breaker::BreakerState;
use crate::limits::RecycleCause;

/// One thing that happened to an agent, a call or a role.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "camelCase", rename_all_fields = "camelCase")]
#[non_exhaustive]
pub enum Event {
    /// An agent process is being started.
    AgentStarting { role: String, agent: String },
    /// An agent is ready for calls.
    AgentReady { role: String, agent: String, pid: u32 },
    /// An agent took a call.
    AgentBusy { role: String, agent: String },
    /// An agent has no call in flight.
    AgentIdle { role: String, agent: String },
    /// An agent process ended; `expected` when skep stopped it.
    AgentExited { role: String, agent: String, pid: u32, status: String, expected: bool },
    /// An agent is being replaced, and why: `reason` reads like "RSS 1.2 GiB over max_rss 1.0 GiB".
    /// A recycled agent that still serves takes no new calls and leaves once its replacement is ready.
    AgentRecycled { role: String, agent: String, pid: u32, cause: RecycleCause, reason: String },
    /// A crashed agent will be replaced after a backoff.
    AgentRestarting { role: String, delay_ms: u64 },
    /// A call was handed to an agent.
    CallStarted { role: String, agent: String, method: String },
    /// The agent reported how far a call has got (`$/progress`).
    CallProgress {
        role: String,
        agent: String,
        method: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        fraction: Option<f64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        message: Option<String>,
    },
    /// A call ended: `outcome` is ok, error, timeout, crashed or cancelled.
    CallFinished { role: String, agent: String, method: String, duration_us: u64, outcome: Outcome },
    /// The role's circuit breaker changed state.
    BreakerChanged { role: String, from: BreakerState, to: BreakerState },
    /// A role hit its restart limit; its calls fail fast.
    RoleFailed { role: String, reason: String },
}

/// How a call ended, for stats and events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Outcome {
    /// A result.
    Ok,
    /// The agent answered with an error object (its code).
    Error(i32),
    /// No answer in time.
    Timeout,
    /// The agent went away during the call.
    Crashed,
    /// The caller gave up first.
    Cancelled,
}

impl Event {
    /// The role the event is about.
    pub fn role(&self) -> &str {
        match self {
            Event::AgentStarting { role, .. }
            | Event::AgentReady { role, .. }
            | Event::AgentBusy { role, .. }
            | Event::AgentIdle { role, .. }
            | Event::AgentExited { role, .. }
            | Event::AgentRecycled { role, .. }
            | Event::AgentRestarting { role, .. }
            | Event::CallStarted { role, .. }
            | Event::CallProgress { role, .. }
            | Event::CallFinished { role, .. }
            | Event::BreakerChanged { role, .. }
            | Event::RoleFailed { role, .. } => role,
        }
    }

    /// The agent (`role/N`) the event is about, if it is about one agent.
    pub fn agent(&self) -> Option<&str> {
        match self {
            Event::AgentStarting { agent, .. }
            | Event::AgentReady { agent, .. }
            | Event::AgentBusy { agent, .. }
            | Event::AgentIdle { agent, .. }
            | Event::AgentExited { agent, .. }
            | Event::AgentRecycled { agent, .. }
            | Event::CallStarted { agent, .. }
            | Event::CallProgress { agent, .. }
            | Event::CallFinished { agent, .. } => Some(agent),
            Event::AgentRestarting { .. } | Event::BreakerChanged { .. } | Event::RoleFailed { .. } => None,
        }
    }
}
