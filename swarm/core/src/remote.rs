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

use crate::config::{Protocol, RoleConfig};
use crate::coordinate::BroadcastReply;
use crate::error::SwarmError;
use crate::swarm::{CallOptions, Swarm};

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

    /// Calls `method` on every agent of every worker serving `role`, waiting
    /// at most `timeout`: one entry per agent, a worker that did not answer
    /// in time as error entries. Dropping the future must tell the workers
    /// to cancel. None by default.
    fn broadcast<'a>(
        &'a self,
        role: &'a str,
        method: &'a str,
        params: Option<&'a RawValue>,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Vec<BroadcastReply>, SwarmError>> {
        let _ = (role, method, params, timeout);
        Box::pin(async { Ok(Vec::new()) })
    }

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

/// How a role this config does not name, but a live worker advertises, is
/// called: remote, with every default (`advertised.rs`).
pub(crate) fn advertised_role(name: &str) -> RoleConfig {
    RoleConfig { protocol: Protocol::Remote, ..RoleConfig::with_command(name, Vec::new()) }
}

/// What a remote role's call or broadcast fails with in a swarm given no cluster connection.
pub(crate) fn no_cluster(role: &str) -> SwarmError {
    let reason = "the role is remote and this swarm has no cluster connection".to_owned();
    SwarmError::Start { role: role.to_owned(), reason }
}

impl Swarm {
    /// A broadcast's far half: every worker's agents of `role`. A remote role
    /// without a cluster connection fails as its calls do; a spilling role
    /// no worker serves has no far half; a role this config does not name
    /// is reached only while a worker advertises it.
    pub(crate) async fn broadcast_remote(
        &self,
        role: &str,
        method: &str,
        params: Option<&RawValue>,
        options: CallOptions,
    ) -> Result<Vec<BroadcastReply>, SwarmError> {
        let roles = self.current();
        let config = match roles.pool(role) {
            Ok(pool) => pool.role.clone(),
            Err(_) if self.remote().is_some_and(|remote| remote.serves(role)) => {
                std::sync::Arc::new(advertised_role(role))
            }
            Err(unknown) => return Err(unknown),
        };
        let Some(remote) = self.remote() else {
            if config.protocol != Protocol::Remote {
                return Ok(Vec::new());
            }
            return Err(no_cluster(role));
        };
        if config.protocol != Protocol::Remote && !remote.serves(role) {
            return Ok(Vec::new());
        }
        let replies = remote.broadcast(role, method, params, options.timeout.unwrap_or(config.timeout)).await;
        match replies {
            // The workers left between the check and the broadcast: a spilling role still has its own agents.
            Err(SwarmError::NoWorkers { .. }) if config.protocol != Protocol::Remote => Ok(Vec::new()),
            replies => replies,
        }
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
