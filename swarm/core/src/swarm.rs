//! The orchestrator as callers see it: a cheap, cloneable handle over one
//! pool per role and the event stream.
//!
//! The roles live behind one swappable snapshot (`Roles`), so a long-lived
//! daemon can reload its config: a call takes the snapshot it starts with and
//! keeps it to the end, and a reload swaps in a new one (`reload.rs`).

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::value::RawValue;
use skep_bridge::{CallError, Notification, RequestOptions};
use tokio::sync::broadcast;

use crate::cache::CacheKey;
use crate::command;
use crate::config::{Config, Handshake, Protocol, RoleConfig};
use crate::error::SwarmError;
use crate::events::{Event, Outcome};
use crate::lease::Lease;
use crate::pool::Pool;
use crate::remote::RemoteCalls;
use crate::role_stats::SwarmStats;
use crate::route::Router;
use crate::spill::Place;
use crate::supervisor::AgentInfo;

/// Events buffered per subscriber before a slow one starts missing some.
const EVENT_BUFFER: usize = 4096;

/// Per-call choices.
#[derive(Debug, Clone, Copy, Default)]
pub struct CallOptions {
    /// Overrides the role's `timeout`.
    pub timeout: Option<Duration>,
    /// Skips the role's idempotent cache for this call.
    pub bypass_cache: bool,
}

/// A role as `swarm/roles` shows it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RoleInfo {
    pub name: String,
    pub command: Vec<String>,
    pub handshake: &'static str,
    pub min_warm: usize,
    pub max_agents: usize,
    pub concurrency: usize,
    pub timeout_ms: u64,
}

/// A running swarm; clones share it. Dropping the last clone stops every agent.
#[derive(Debug, Clone)]
pub struct Swarm {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// The roles now; replaced whole by a reload, never edited in place.
    roles: RwLock<Arc<Roles>>,
    events: broadcast::Sender<Event>,
    /// Where calls of `remote = true` roles go; set once, by [`Swarm::set_remote`].
    remote: std::sync::OnceLock<Arc<dyn RemoteCalls>>,
}

/// One generation of roles: their pools and the router over their patterns.
#[derive(Debug)]
pub(crate) struct Roles {
    pub(crate) pools: BTreeMap<String, Pool>,
    pub(crate) router: Router,
}

impl Roles {
    pub(crate) fn new(pools: BTreeMap<String, Pool>) -> Roles {
        let router = Router::new(pools.values().map(|p| &*p.role));
        Roles { pools, router }
    }

    pub(crate) fn pool(&self, role: &str) -> Result<&Pool, SwarmError> {
        self.pools.get(role).ok_or_else(|| SwarmError::UnknownRole {
            role: role.to_owned(),
            known: self.pools.keys().cloned().collect(),
        })
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        for pool in self.current().pools.values() {
            pool.shutdown_now();
        }
    }
}

impl Inner {
    fn current(&self) -> Arc<Roles> {
        // A poisoned lock only means a panic elsewhere while swapping: the Arc inside is whole.
        Arc::clone(&self.roles.read().unwrap_or_else(std::sync::PoisonError::into_inner))
    }
}

impl Swarm {
    /// Starts every role's pool and waits until each has `min_warm` agents
    /// ready or has failed (a failed role answers its calls with -32003).
    pub async fn start(config: Config) -> Result<Swarm, SwarmError> {
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let pools: BTreeMap<String, Pool> =
            config.roles.into_values().map(|role| (role.name.clone(), Pool::start(role, events.clone()))).collect();
        futures::future::join_all(pools.values().map(Pool::settled)).await;
        let roles = RwLock::new(Arc::new(Roles::new(pools)));
        Ok(Swarm { inner: Arc::new(Inner { roles, events, remote: std::sync::OnceLock::new() }) })
    }

    /// The role whose `route` patterns match `text`.
    pub fn route(&self, text: &str) -> Result<String, SwarmError> {
        self.inner.current().router.route(text).map(str::to_owned)
    }

    /// Calls `method` on an agent of `role` and returns its result undecoded.
    /// Methods the role declares idempotent are answered from its cache when
    /// they can be, and identical ones in flight share one agent call.
    pub async fn call(
        &self,
        role: &str,
        method: &str,
        params: Option<&RawValue>,
        options: CallOptions,
    ) -> Result<Box<RawValue>, SwarmError> {
        let roles = self.current();
        let pool = match roles.pool(role) {
            Ok(pool) => pool,
            // Boxed: the cluster's roles are rare beside local calls.
            Err(unknown) => return Box::pin(self.call_advertised(role, method, params, options, unknown)).await,
        };
        let result = self.call_in(pool, role, method, params, options).await;
        match result {
            // The pool was drained by a reload between our snapshot and its
            // acquire: the call never ran, so the role's new pool takes it.
            // Boxed: rare, and inline it would double every call's future.
            Err(SwarmError::ShuttingDown) => match self.replacement(&roles, role) {
                Some(now) => Box::pin(self.call_in(now.pool(role)?, role, method, params, options)).await,
                None => Err(SwarmError::ShuttingDown),
            },
            other => other,
        }
    }

    /// The roles now, if `role`'s pool in them is not the one in `seen`.
    pub(crate) fn replacement(&self, seen: &Roles, role: &str) -> Option<Arc<Roles>> {
        let now = self.current();
        let (before, after) = (seen.pools.get(role)?, now.pools.get(role)?);
        (!Arc::ptr_eq(&before.role, &after.role)).then_some(now)
    }

    async fn call_in(
        &self,
        pool: &Pool,
        role: &str,
        method: &str,
        params: Option<&RawValue>,
        options: CallOptions,
    ) -> Result<Box<RawValue>, SwarmError> {
        let idempotent = !options.bypass_cache && pool.role.idempotent.iter().any(|m| m == method);
        let Some(cache) = pool.cache.as_ref().filter(|_| idempotent) else {
            return self.call_uncached(pool, method, params, options).await;
        };
        let key = match CacheKey::new(role, method, params) {
            Ok(key) => key,
            Err(e) => {
                tracing::debug!(role, method, %e, "params have no cache key; calling uncached");
                return self.call_uncached(pool, method, params, options).await;
            }
        };
        // Boxed: only idempotent methods come here, and the cache's future
        // inline would grow every uncached call's future too.
        let cached =
            cache.get_or_call(key, || async { self.call_uncached(pool, method, params, options).await.map(Arc::from) });
        let value = Box::pin(cached).await?;
        Ok(RawValue::to_owned(&value))
    }

    async fn call_uncached(
        &self,
        pool: &Pool,
        method: &str,
        params: Option<&RawValue>,
        options: CallOptions,
    ) -> Result<Box<RawValue>, SwarmError> {
        match pool.role.protocol {
            // Boxed: a command role starts a process per call, a remote one crosses the network;
            // neither should grow every local call's future.
            Protocol::Command => return Box::pin(self.call_command(pool, params, options)).await,
            Protocol::Remote => return Box::pin(self.call_remote(pool, method, params, options)).await,
            _ => {}
        }
        // A spilling role's call past its local capacity goes remote; `_slot` holds a local place.
        let _slot = match crate::spill::place(pool) {
            Place::Here(slot) => slot,
            Place::Full => match Box::pin(self.spill(pool, method, params, options)).await {
                Some(result) => return result,
                None => None,
            },
        };
        let lease = pool.acquire().await?;
        self.call_on(pool, lease, method, params, options).await
    }

    /// A command role's call: its own process, admitted by the breaker and
    /// bounded to `max_agents` at once.
    async fn call_command(
        &self,
        pool: &Pool,
        params: Option<&RawValue>,
        options: CallOptions,
    ) -> Result<Box<RawValue>, SwarmError> {
        let role = &pool.role;
        let ticket = pool.admit().await?;
        let waited = role.queue_timeout;
        let slot = tokio::time::timeout(waited, pool.commands.acquire())
            .await
            .map_err(|_| SwarmError::Overloaded { role: role.name.clone(), waited })?
            .map_err(|_| SwarmError::ShuttingDown)?;
        let result = command::run(role, params, options.timeout.unwrap_or(role.timeout)).await;
        drop(slot);
        ticket.finish(match &result {
            Ok(_) => Outcome::Ok,
            Err(SwarmError::Timeout { .. }) => Outcome::Timeout,
            Err(_) => Outcome::Crashed,
        });
        result
    }

    /// The carrier of remote calls, once given.
    pub(crate) fn remote(&self) -> Option<&Arc<dyn RemoteCalls>> {
        self.inner.remote.get()
    }

    /// Gives the swarm the carrier of its remote roles' calls; only the first one counts.
    pub fn set_remote(&self, remote: Arc<dyn RemoteCalls>) -> bool {
        self.inner.remote.set(remote).is_ok()
    }

    /// A remote role's call: admitted and judged by the role's breaker like a
    /// command's, carried by the swarm's [`RemoteCalls`].
    async fn call_remote(
        &self,
        pool: &Pool,
        method: &str,
        params: Option<&RawValue>,
        options: CallOptions,
    ) -> Result<Box<RawValue>, SwarmError> {
        let role = &pool.role;
        let Some(remote) = self.inner.remote.get() else { return Err(crate::remote::no_cluster(&role.name)) };
        let ticket = pool.admit().await?;
        let result = remote.call(role, method, params, options.timeout.unwrap_or(role.timeout)).await;
        ticket.finish(crate::spill::outcome(&result));
        result
    }

    /// Runs one call on a leased agent and books its outcome.
    pub(crate) async fn call_on(
        &self,
        pool: &Pool,
        lease: Lease,
        method: &str,
        params: Option<&RawValue>,
        options: CallOptions,
    ) -> Result<Box<RawValue>, SwarmError> {
        let role = pool.role.name.as_str();
        let timeout = options.timeout.unwrap_or(pool.role.timeout);
        self.emit(|| Event::CallStarted {
            role: role.to_owned(),
            agent: lease.agent.to_string(),
            method: method.to_owned(),
        });
        // Reports the call's end even when the caller drops it half-way (a
        // cancel, an aborted race): a view must never show it running forever.
        let mut report = FinishReport {
            swarm: self,
            role,
            agent: Arc::clone(&lease.agent),
            method,
            started: Instant::now(),
            outcome: None,
        };
        let relay = self.progress_relay(&pool.role, &lease.agent, method);
        let answer =
            lease.client().call_raw_notified(method, params, RequestOptions { timeout: Some(timeout) }, relay).await;
        let (outcome, result) = match answer {
            Ok(result) => (Outcome::Ok, Ok(result)),
            Err(CallError::Rpc(e)) => (Outcome::Error(e.code()), Err(SwarmError::Agent(e))),
            Err(CallError::Elapsed(after)) => (
                Outcome::Timeout,
                Err(SwarmError::Timeout { role: role.to_owned(), agent: lease.agent.to_string(), after }),
            ),
            Err(CallError::Disconnected) => {
                let (exit, stderr_tail) = lease.crash_report().await;
                let err = SwarmError::AgentCrashed {
                    role: role.to_owned(),
                    agent: lease.agent.to_string(),
                    pid: lease.pid,
                    exit,
                    stderr_tail,
                };
                (Outcome::Crashed, Err(err))
            }
            Err(other) => (Outcome::Error(other.code()), Err(SwarmError::Agent(other.to_error_object()))),
        };
        let elapsed = lease.finish(outcome);
        report.outcome = Some((outcome, elapsed));
        result
    }

    /// The configured roles.
    pub fn roles(&self) -> Vec<RoleInfo> {
        self.current()
            .pools
            .values()
            .map(|pool| {
                let role = &pool.role;
                RoleInfo {
                    name: role.name.clone(),
                    command: role.command.clone(),
                    handshake: match role.handshake {
                        Handshake::None => "none",
                        Handshake::Initialize => "initialize",
                        Handshake::Mcp => "mcp",
                    },
                    min_warm: role.min_warm,
                    max_agents: role.max_agents,
                    concurrency: role.concurrency,
                    timeout_ms: role.timeout.as_millis() as u64,
                }
            })
            .collect()
    }

    /// The roles' configs as one `Config` (what a workflow is validated against).
    pub fn config(&self) -> Config {
        let roles =
            self.current().pools.iter().map(|(name, pool)| (name.clone(), RoleConfig::clone(&pool.role))).collect();
        Config { roles, ..Config::default() }
    }

    /// Every agent of every role.
    pub async fn agents(&self) -> Vec<AgentInfo> {
        let roles = self.current();
        let snapshots = futures::future::join_all(roles.pools.values().map(Pool::snapshot)).await;
        snapshots.into_iter().flatten().flat_map(|(agents, _)| agents).collect()
    }

    /// Stats of every role.
    pub async fn stats(&self) -> SwarmStats {
        let current = self.current();
        let snapshots = futures::future::join_all(current.pools.values().map(Pool::snapshot)).await;
        let mut roles: Vec<_> = snapshots.into_iter().flatten().map(|(_, stats)| stats).collect();
        for stats in &mut roles {
            stats.cache = current.pools.get(&stats.role).and_then(|p| p.cache.as_ref()).map(|c| c.stats());
        }
        let workers = self.inner.remote.get().map(|remote| remote.workers());
        SwarmStats { roles, workers }
    }

    /// Forgets every answer `role`'s idempotent cache holds (a server said
    /// what it lists has changed); a call already in flight may still store
    /// its answer.
    pub fn clear_cache(&self, role: &str) {
        if let Some(cache) = self.current().pools.get(role).and_then(|p| p.cache.as_ref()) {
            cache.clear();
        }
    }

    /// The event stream; a subscriber that falls behind misses the oldest events.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.inner.events.subscribe()
    }

    /// Stops every agent by the stop ladder and waits until all have exited.
    /// Calls still in flight fail; new calls get -32005.
    pub async fn shutdown(&self) {
        futures::future::join_all(self.current().pools.values().map(Pool::shutdown)).await;
    }

    /// The roles now: a call keeps the snapshot it started with.
    pub(crate) fn current(&self) -> Arc<Roles> {
        self.inner.current()
    }

    /// Puts `roles` in place of the current ones and returns those.
    pub(crate) fn swap(&self, roles: Roles) -> Arc<Roles> {
        let mut slot = self.inner.roles.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        std::mem::replace(&mut *slot, Arc::new(roles))
    }

    pub(crate) fn events(&self) -> &broadcast::Sender<Event> {
        &self.inner.events
    }

    /// Where an agent's `$/progress` for this call goes: the event stream, and
    /// the caller's sink when it runs inside [`crate::with_progress`].
    /// It is made for every call, whether or not progress comes, so it
    /// shares the role and agent names rather than copying them.
    fn progress_relay(
        &self,
        role: &Arc<RoleConfig>,
        agent: &Arc<str>,
        method: &str,
    ) -> impl Fn(Notification) + Send + Sync + 'static {
        let (swarm, sink) = (self.clone(), crate::progress::current_sink());
        let (role, agent, method) = (Arc::clone(role), Arc::clone(agent), method.to_owned());
        move |notification| {
            let Some(progress) = crate::progress::parse(&notification) else { return };
            swarm.emit(|| Event::CallProgress {
                role: role.name.clone(),
                agent: agent.to_string(),
                method: method.clone(),
                fraction: progress.fraction,
                message: progress.message.clone(),
            });
            if let Some(sink) = &sink {
                sink(progress);
            }
        }
    }

    fn emit(&self, event: impl FnOnce() -> Event) {
        if self.inner.events.receiver_count() > 0 {
            let _ = self.inner.events.send(event());
        }
    }
}

/// Emits `CallFinished` when dropped: with the call's outcome once known,
/// as cancelled if the call future was dropped before it ended.
struct FinishReport<'a> {
    swarm: &'a Swarm,
    role: &'a str,
    agent: Arc<str>,
    method: &'a str,
    started: Instant,
    outcome: Option<(Outcome, Duration)>,
}

impl Drop for FinishReport<'_> {
    fn drop(&mut self) {
        let (outcome, elapsed) = self.outcome.unwrap_or((Outcome::Cancelled, self.started.elapsed()));
        self.swarm.emit(|| Event::CallFinished {
            role: self.role.to_owned(),
            agent: self.agent.to_string(),
            method: self.method.to_owned(),
            duration_us: elapsed.as_micros() as u64,
            outcome,
        });
    }
}
