//! A role's warm pool: one supervisor task owns the role's agents; callers
//! hold a [`Pool`] handle and borrow an agent as a [`Lease`] for one call.
//!
//! Everything that changes the pool is a `Msg` to the supervisor
//! (`supervisor/`): acquire when no agent is idle, admit and judge (command
//! roles), snapshot, shutdown. An idle agent is taken from the role's idle
//! set and given back to it without a message (`supervisor/fast.rs`); the
//! supervisor books those leases from a ledger.

use std::sync::Arc;

use tokio::sync::{broadcast, mpsc, oneshot};

use crate::cache::{CacheConfig, IdempotentCache};
use crate::config::RoleConfig;
use crate::error::SwarmError;
use crate::events::Event;
use crate::lease::{Lease, Ticket};
use crate::role_stats::RoleStats;
use crate::supervisor::{AgentInfo, FastPath, Msg, Supervisor};

/// A handle to a role's supervisor.
#[derive(Debug, Clone)]
pub(crate) struct Pool {
    pub role: Arc<RoleConfig>,
    /// The role's idempotent-call cache, when it declares idempotent methods.
    pub cache: Option<Arc<IdempotentCache<SwarmError>>>,
    /// Command processes that may run at once (`max_agents`), for command roles.
    pub commands: Arc<tokio::sync::Semaphore>,
    /// Calls the local agents take at once (`max_agents × concurrency`), for
    /// a role that spills past them to remote workers (`spill.rs`).
    pub local: Option<Arc<tokio::sync::Semaphore>>,
    tx: mpsc::UnboundedSender<Msg>,
    fast: Arc<FastPath>,
}

impl Pool {
    /// Starts the role's supervisor on the current runtime.
    pub(crate) fn start(role: RoleConfig, events: broadcast::Sender<Event>) -> Pool {
        crate::launch::warn_if_not_on_path(&role);
        let role = Arc::new(role);
        let (tx, rx) = mpsc::unbounded_channel();
        let fast = Arc::new(FastPath::new(&role, tx.clone(), events.clone()));
        Supervisor::spawn(Arc::clone(&role), tx.clone(), rx, events, Arc::clone(&fast));
        let cache = (!role.idempotent.is_empty()).then(|| {
            let limits =
                CacheConfig { ttl: role.cache_ttl, max_entries: role.cache_capacity, max_bytes: role.cache_bytes };
            Arc::new(IdempotentCache::new(limits))
        });
        let commands = Arc::new(tokio::sync::Semaphore::new(role.max_agents));
        let local = (role.spill_remote)
            .then(|| Arc::new(tokio::sync::Semaphore::new(role.max_agents.saturating_mul(role.concurrency))));
        Pool { role, cache, commands, local, tx, fast }
    }

    /// An agent for one call, waiting at most the role's queue timeout: an
    /// idle one from the idle set at once, else from the supervisor, which
    /// keeps that timeout (it owns the queue), so no call registers a timer
    /// of its own.
    pub(crate) async fn acquire(&self) -> Result<Lease, SwarmError> {
        if let Some(lease) = self.fast.try_lease() {
            return Ok(lease);
        }
        let (reply, lease) = oneshot::channel();
        self.tx.send(Msg::Acquire(reply)).map_err(|_| SwarmError::ShuttingDown)?;
        lease.await.map_err(|_| SwarmError::ShuttingDown)?
    }

    /// A lease on every ready agent of the role.
    pub(crate) async fn acquire_each(&self) -> Result<Vec<Lease>, SwarmError> {
        let (reply, leases) = oneshot::channel();
        self.tx.send(Msg::AcquireEach(reply)).map_err(|_| SwarmError::ShuttingDown)?;
        leases.await.map_err(|_| SwarmError::ShuttingDown)?
    }

    /// Resolves once `min_warm` agents are ready or the role has failed.
    pub(crate) async fn settled(&self) {
        let (reply, done) = oneshot::channel();
        if self.tx.send(Msg::Settled(reply)).is_ok() {
            let _ = done.await;
        }
    }

    /// The role's agents and stats.
    pub(crate) async fn snapshot(&self) -> Option<(Vec<AgentInfo>, RoleStats)> {
        let (reply, snapshot) = oneshot::channel();
        self.tx.send(Msg::Snapshot(reply)).ok()?;
        snapshot.await.ok()
    }

    /// Stops every agent by the stop ladder and waits until all have exited.
    pub(crate) async fn shutdown(&self) {
        // Shut before the message: a caller after this point must hear
        // `ShuttingDown` (and go to a reloaded role's new pool), not lease an agent about to stop.
        self.fast.stop();
        let (reply, done) = oneshot::channel();
        if self.tx.send(Msg::Shutdown(Some(reply))).is_ok() {
            let _ = done.await;
        }
    }

    /// A breaker permit and a ticket for a call that runs without an agent.
    pub(crate) async fn admit(&self) -> Result<Ticket, SwarmError> {
        let (reply, permit) = oneshot::channel();
        self.tx.send(Msg::Admit(reply)).map_err(|_| SwarmError::ShuttingDown)?;
        let permit = permit.await.map_err(|_| SwarmError::ShuttingDown)??;
        Ok(Ticket::new(permit, self.tx.clone()))
    }

    /// Asks for a shutdown without waiting (from `Drop`).
    pub(crate) fn shutdown_now(&self) {
        self.fast.stop();
        let _ = self.tx.send(Msg::Shutdown(None));
    }
}
