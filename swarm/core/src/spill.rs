//! `spill = "remote"`: a role with agents here that overflows to the
//! cluster's workers serving the same role once its local pool is saturated
//! (every agent busy at its concurrency and `max_agents` reached).
//!
//! Saturation is counted here, not asked of the supervisor: a semaphore of
//! `max_agents × concurrency` places, one held by each local call from
//! before it asks for an agent until it ends. A call that finds no place
//! goes remote at once rather than queueing, if a live worker advertises the
//! role. When nothing ran remotely (no worker, or all at capacity), the call
//! queues here after all, as it would without `spill`, so spilling never
//! makes a call fail that would have waited.

use std::sync::Arc;

use serde_json::value::RawValue;
use skep_bridge::code;
use tokio::sync::OwnedSemaphorePermit;

use crate::error::SwarmError;
use crate::events::Outcome;
use crate::pool::Pool;
use crate::swarm::{CallOptions, Swarm};

/// Where a call of a local role runs.
pub(crate) enum Place {
    /// Here: with a local place held for a spilling role, without one otherwise.
    Here(Option<OwnedSemaphorePermit>),
    /// The local pool is saturated: try a remote worker first.
    Full,
}

/// Takes a local place for a call of `pool`'s role, if it spills at all.
pub(crate) fn place(pool: &Pool) -> Place {
    match &pool.local {
        None => Place::Here(None),
        Some(local) => match Arc::clone(local).try_acquire_owned() {
            Ok(slot) => Place::Here(Some(slot)),
            Err(_) => Place::Full,
        },
    }
}

/// How a remote call counts for its role's breaker and stats.
pub(crate) fn outcome(result: &Result<Box<RawValue>, SwarmError>) -> Outcome {
    match result {
        Ok(_) => Outcome::Ok,
        Err(SwarmError::Timeout { .. } | SwarmError::RemoteLost { .. }) => Outcome::Timeout,
        Err(SwarmError::NoWorkers { .. }) => Outcome::Crashed,
        Err(e) => Outcome::Error(e.code()),
    }
}

/// The answer says the call ran on no worker, so waiting for a local agent is still safe.
fn ran_nowhere(result: &Result<Box<RawValue>, SwarmError>) -> bool {
    match result {
        Err(SwarmError::NoWorkers { .. }) => true,
        Err(SwarmError::Agent(e)) => e.code() == code::OVERLOADED || e.code() == code::SHUTTING_DOWN,
        _ => false,
    }
}

impl Swarm {
    /// A saturated role's call on a remote worker, admitted and judged by the
    /// role's breaker like a local one; `None` when it ran nowhere and should
    /// wait for a local agent.
    pub(crate) async fn spill(
        &self,
        pool: &Pool,
        method: &str,
        params: Option<&RawValue>,
        options: CallOptions,
    ) -> Option<Result<Box<RawValue>, SwarmError>> {
        let role = &pool.role;
        let remote = self.remote().filter(|remote| remote.serves(&role.name))?;
        let ticket = match pool.admit().await {
            Ok(ticket) => ticket,
            Err(e) => return Some(Err(e)),
        };
        let result = remote.call(role, method, params, options.timeout.unwrap_or(role.timeout)).await;
        if ran_nowhere(&result) {
            // Counted once, where it does run.
            ticket.unused();
            tracing::debug!(role = %role.name, method, "no worker took the spilled call; waiting here");
            return None;
        }
        ticket.finish(outcome(&result));
        Some(result)
    }
}
