//! What the supervisor is told: the one way anything changes a role's pool.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;

use super::AgentInfo;
use crate::breaker::Permit;
use crate::error::SwarmError;
use crate::events::Outcome;
use crate::launch::{Agent, Exit, StartFailure};
use crate::lease::Lease;
use crate::limits::GroupUsage;
use crate::role_stats::RoleStats;

/// A message to a role's supervisor.
pub(crate) enum Msg {
    Acquire(oneshot::Sender<Result<Lease, SwarmError>>),
    /// A lease on every ready agent, whatever its load (for broadcasts).
    AcquireEach(oneshot::Sender<Result<Vec<Lease>, SwarmError>>),
    /// Leases given back through the idle set need booking now (`fast.rs`).
    Wake,
    /// A breaker permit for a call that needs no agent (command roles).
    Admit(oneshot::Sender<Result<Permit, SwarmError>>),
    /// The end of a call admitted with `Admit`.
    Judge {
        permit: Permit,
        outcome: Outcome,
        elapsed: Duration,
    },
    /// A permit from `Admit` whose call ran nowhere (a spilled call that went
    /// back to the local queue): given back without counting as a call.
    Unused(Permit),
    Started {
        id: u64,
        result: Result<Agent, StartFailure>,
    },
    Exited {
        id: u64,
        exit: Exit,
    },
    /// A sample of the agents' process groups, by group id (an agent's pid), taken at `at`.
    Usage {
        at: Instant,
        groups: BTreeMap<u32, GroupUsage>,
    },
    /// Answered once `min_warm` agents are ready or the role has failed.
    Settled(oneshot::Sender<()>),
    Snapshot(oneshot::Sender<(Vec<AgentInfo>, RoleStats)>),
    Shutdown(Option<oneshot::Sender<()>>),
}
