//! A role's warm pool: one supervisor task owns the role's agents; callers
//! hold a [`Pool`] handle and borrow an agent as a [`Lease`] for one call.
//!
//! Everything that changes the pool is a [`Msg`] to the supervisor
//! (`supervisor.rs`): acquire, release (sent by a lease's `Drop`), admit and
//! judge (command roles), snapshot, shutdown.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use skep_bridge::Client;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::time::Instant;

use crate::agent::{self, Agent, Exit, StartFailure};
use crate::breaker::Permit;
use crate::cache::{CacheConfig, IdempotentCache};
use crate::config::RoleConfig;
use crate::error::SwarmError;
use crate::events::{Event, Outcome};
use crate::stats::RoleStats;
use crate::supervisor::Supervisor;

/// A handle to a role's supervisor.
#[derive(Debug, Clone)]
pub(crate) struct Pool {
    pub role: Arc<RoleConfig>,
    /// The role's idempotent-call cache, when it declares idempotent methods.
    pub cache: Option<Arc<IdempotentCache<SwarmError>>>,
    /// Command processes that may run at once (`max_agents`), for command roles.
    pub commands: Arc<tokio::sync::Semaphore>,
    tx: mpsc::UnboundedSender<Msg>,
}

/// One agent as `swarm/agents` shows it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentInfo {
    /// `role/N`.
    pub id: String,
    pub role: String,
    /// 0 while starting.
    pub pid: u32,
    /// starting, idle, busy or stopping.
    pub state: &'static str,
    pub calls: u64,
    pub in_flight: usize,
    pub uptime_ms: u64,
    /// The last lines of the agent's stderr (up to [`AGENT_STDERR_TAIL`] bytes), for views such as the grid.
    pub stderr_tail: String,
}

/// How much of each agent's stderr `swarm/agents` shows.
pub const AGENT_STDERR_TAIL: usize = 512;

pub(crate) enum Msg {
    Acquire(oneshot::Sender<Result<Lease, SwarmError>>),
    /// A lease on every ready agent, whatever its load (for broadcasts).
    AcquireEach(oneshot::Sender<Result<Vec<Lease>, SwarmError>>),
    Release {
        id: u64,
        outcome: Outcome,
        elapsed: Duration,
        permit: Option<Permit>,
    },
    /// A breaker permit for a call that needs no agent (command roles).
    Admit(oneshot::Sender<Result<Permit, SwarmError>>),
    /// The end of a call admitted with `Admit`.
    Judge {
        permit: Permit,
        outcome: Outcome,
        elapsed: Duration,
    },
    Started {
        id: u64,
        result: Result<Agent, StartFailure>,
    },
    Exited {
        id: u64,
        exit: Exit,
    },
    /// Answered once `min_warm` agents are ready or the role has failed.
    Settled(oneshot::Sender<()>),
    Snapshot(oneshot::Sender<(Vec<AgentInfo>, RoleStats)>),
    Shutdown(Option<oneshot::Sender<()>>),
}

impl Pool {
    /// Starts the role's supervisor on the current runtime.
    pub(crate) fn start(role: RoleConfig, events: broadcast::Sender<Event>) -> Pool {
        let role = Arc::new(role);
        let (tx, rx) = mpsc::unbounded_channel();
        Supervisor::spawn(Arc::clone(&role), tx.clone(), rx, events);
        let cache = (!role.idempotent.is_empty()).then(|| {
            let limits =
                CacheConfig { ttl: role.cache_ttl, max_entries: role.cache_capacity, max_bytes: role.cache_bytes };
            Arc::new(IdempotentCache::new(limits))
        });
        let commands = Arc::new(tokio::sync::Semaphore::new(role.max_agents));
        Pool { role, cache, commands, tx }
    }

    /// An agent for one call, waiting at most the role's queue timeout.
    pub(crate) async fn acquire(&self) -> Result<Lease, SwarmError> {
        let (reply, lease) = oneshot::channel();
        self.tx.send(Msg::Acquire(reply)).map_err(|_| SwarmError::ShuttingDown)?;
        let waited = self.role.queue_timeout;
        match tokio::time::timeout(waited, lease).await {
            Ok(Ok(lease)) => lease,
            Ok(Err(_)) => Err(SwarmError::ShuttingDown),
            Err(_) => Err(SwarmError::Overloaded { role: self.role.name.clone(), waited }),
        }
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
        Ok(Ticket { permit: Some(permit), started: Instant::now(), outcome: Outcome::Cancelled, pool: self.tx.clone() })
    }

    /// Asks for a shutdown without waiting (from `Drop`).
    pub(crate) fn shutdown_now(&self) {
        let _ = self.tx.send(Msg::Shutdown(None));
    }
}

/// An agent borrowed for one call. Dropping it gives the agent back; a lease
/// dropped without [`Lease::finish`] counts as a cancelled call.
#[derive(Debug)]
pub(crate) struct Lease {
    pub client: Client,
    pub agent: String,
    pub pid: u32,
    pub(crate) id: u64,
    pub(crate) stderr: crate::stderr_ring::StderrTail,
    pub(crate) exit: tokio::sync::watch::Receiver<Option<String>>,
    pub(crate) started: Instant,
    pub(crate) outcome: Outcome,
    /// The breaker's permit; `None` for broadcasts, which the breaker does not judge.
    pub(crate) permit: Option<Permit>,
    pub(crate) pool: mpsc::UnboundedSender<Msg>,
}

/// A call admitted by the breaker that runs without a pooled agent (a
/// command role's process). Dropping it books the outcome.
#[derive(Debug)]
pub(crate) struct Ticket {
    permit: Option<Permit>,
    started: Instant,
    outcome: Outcome,
    pool: mpsc::UnboundedSender<Msg>,
}

impl Ticket {
    /// Records how the call ended.
    pub(crate) fn finish(mut self, outcome: Outcome) -> Duration {
        self.outcome = outcome;
        self.started.elapsed()
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let Some(permit) = self.permit.take() {
            let _ = self.pool.send(Msg::Judge { permit, outcome: self.outcome, elapsed: self.started.elapsed() });
        }
    }
}

impl Lease {
    /// Records how the call ended; the agent goes back when the lease drops.
    pub(crate) fn finish(mut self, outcome: Outcome) -> Duration {
        self.outcome = outcome;
        self.started.elapsed()
    }

    /// The agent's exit status (waiting briefly for it: output closes a moment
    /// before the exit is reaped) and the tail of its stderr.
    pub(crate) async fn crash_report(&mut self) -> (String, String) {
        let exited = tokio::time::timeout(Duration::from_millis(50), self.exit.wait_for(Option::is_some)).await;
        let exit = match exited {
            Ok(Ok(status)) => status.clone().unwrap_or_default(),
            _ => "output closed; exit status not known yet".to_owned(),
        };
        (exit, self.stderr.tail(agent::TAIL_BYTES))
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let release = Msg::Release {
            id: self.id,
            outcome: self.outcome,
            elapsed: self.started.elapsed(),
            permit: self.permit.take(),
        };
        let _ = self.pool.send(release);
    }
}
