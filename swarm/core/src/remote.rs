//! The seam between a swarm and its remote roles: a role declared
//! `remote = true` has no agents here, and its calls go to whatever
//! [`RemoteCalls`] the swarm was given (`skep-cluster`'s NATS client). The
//! core stays free of any transport; everything else about the call (the
//! breaker, the idempotent cache, stats, events) is the same as a local one.

use std::fmt::Debug;
use std::time::Duration;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::config::RoleConfig;
use crate::error::SwarmError;

/// Carries one call of a remote role to an agent somewhere else.
pub trait RemoteCalls: Send + Sync + Debug {
    /// Calls `method` of `role` and waits at most `timeout` for the answer.
    /// Dropping the future must tell the far side to cancel.
    fn call<'a>(
        &'a self,
        role: &'a RoleConfig,
        method: &'a str,
        params: Option<&'a RawValue>,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Box<RawValue>, SwarmError>>;

    /// Whether a live worker that takes calls serves `role` (where a
    /// `spill = "remote"` role may overflow); none by default.
    fn serves(&self, role: &str) -> bool {
        let _ = role;
        false
    }

    /// The workers heard from lately, for `swarm/stats`; none by default.
    fn workers(&self) -> Vec<RemoteWorker> {
        Vec::new()
    }
}

/// A remote worker as its last heartbeat described it, and how long ago that was.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RemoteWorker {
    /// `host-pid`.
    pub id: String,
    /// The host it runs on.
    pub host: String,
    /// Its process id on that host.
    pub pid: u32,
    /// It takes no new calls and will be gone soon.
    pub draining: bool,
    /// Milliseconds since its last heartbeat arrived.
    pub age_ms: u64,
    /// How often it sends one.
    pub interval_ms: u64,
    /// Calls it takes at once, over all roles.
    pub capacity: usize,
    /// Calls in flight on it, over all roles.
    pub load: usize,
    /// Its roles, each with its capacity and calls in flight.
    pub roles: Vec<RoleLoad>,
    /// Its agents.
    pub agents: Vec<RemoteAgent>,
}

/// One role on a worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoleLoad {
    /// The role's name.
    pub role: String,
    /// Calls of the role it takes at once; past it, -32004.
    pub capacity: usize,
    /// Calls of the role in flight now.
    pub in_flight: usize,
}

/// One agent on a worker, as the worker's `swarm/agents` would show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RemoteAgent {
    /// `role/N` on that worker.
    pub id: String,
    /// Its role.
    pub role: String,
    /// Its pid on the worker's host; 0 while starting.
    pub pid: u32,
    /// starting, idle, busy, recycling or stopping.
    pub state: String,
    /// Calls it answered.
    pub calls: u64,
    /// Calls it holds now.
    pub in_flight: usize,
}
