//! `share = "session"`: a role whose agents keep per-client state gets one
//! agent per MCP session, never shared. Each agent lives in a private
//! one-agent swarm (so it has the role's supervision, timeout, breaker and
//! restarts); a few are kept started and ready as spares, so a new session
//! does not wait for a cold start, and a session's agent is stopped when the
//! session ends, never handed to another.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use skep_swarm::{Config, RoleConfig, Swarm, SwarmError};
use tokio_util::sync::CancellationToken;

/// The warm spares of every `share = "session"` role.
#[derive(Debug, Default)]
pub(crate) struct Spares {
    roles: BTreeMap<String, Arc<RoleSpares>>,
}

#[derive(Debug)]
struct RoleSpares {
    /// The role as configured (its `min_warm` is how many spares to keep).
    role: Arc<RoleConfig>,
    ready: Mutex<Vec<Swarm>>,
    /// Agents held by sessions now; with the spares, at most `max_agents`.
    held: Arc<AtomicUsize>,
    stop: CancellationToken,
}

/// A session's own agent; dropping it stops the agent.
#[derive(Debug)]
pub(crate) struct Held {
    swarm: Swarm,
    held: Arc<AtomicUsize>,
}

impl Held {
    /// The private swarm of the session's agent.
    pub(crate) fn swarm(&self) -> &Swarm {
        &self.swarm
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.held.fetch_sub(1, Ordering::SeqCst);
        // Stopped, never recycled: its state was this session's.
        let swarm = self.swarm.clone();
        tokio::spawn(async move { swarm.shutdown().await });
    }
}

impl Spares {
    /// Starts `min_warm` spares (at least one) of each role, ready when this returns.
    pub(crate) async fn start(roles: Vec<RoleConfig>, stop: &CancellationToken) -> Spares {
        let roles: BTreeMap<String, Arc<RoleSpares>> = (roles.into_iter())
            .map(|role| {
                let spares = RoleSpares {
                    role: Arc::new(role),
                    ready: Mutex::new(Vec::new()),
                    held: Arc::new(AtomicUsize::new(0)),
                    stop: stop.child_token(),
                };
                (spares.role.name.clone(), Arc::new(spares))
            })
            .collect();
        let fills = roles.values().flat_map(|r| (0..r.want()).map(|_| Arc::clone(r).refill()));
        futures::future::join_all(fills).await;
        Spares { roles }
    }

    /// The roles served one agent per session.
    pub(crate) fn configs(&self) -> impl Iterator<Item = Arc<RoleConfig>> + '_ {
        self.roles.values().map(|r| Arc::clone(&r.role))
    }

    /// Whether `role` is served one agent per session.
    pub(crate) fn serves(&self, role: &str) -> bool {
        self.roles.contains_key(role)
    }

    /// An agent of `role` for one session: a warm spare when there is one
    /// (and a replacement started behind it), else one started now.
    pub(crate) async fn take(&self, role: &str) -> Result<Held, SwarmError> {
        let spares = self.roles.get(role).ok_or_else(|| SwarmError::UnknownRole {
            role: role.to_owned(),
            known: self.roles.keys().cloned().collect(),
        })?;
        let max = spares.role.max_agents;
        if spares.held.fetch_add(1, Ordering::SeqCst) >= max {
            spares.held.fetch_sub(1, Ordering::SeqCst);
            return Err(SwarmError::Start {
                role: role.to_owned(),
                reason: format!("every one of its {max} agents (max_agents) serves another MCP session"),
            });
        }
        let held = Held { swarm: spares.pop_or_start().await?, held: Arc::clone(&spares.held) };
        tokio::spawn(Arc::clone(spares).refill());
        Ok(held)
    }

    /// Per role: agents held by sessions now, and spares ready.
    pub(crate) fn counts(&self) -> Vec<(String, usize, usize)> {
        let counts = self.roles.values().map(|r| (r.role.name.clone(), r.held.load(Ordering::SeqCst), r.ready_now()));
        counts.collect()
    }

    /// Stops every spare (sessions' own agents stop with their sessions).
    pub(crate) async fn stop(&self) {
        for spares in self.roles.values() {
            spares.stop.cancel();
            let ready = std::mem::take(&mut *spares.ready.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
            futures::future::join_all(ready.iter().map(Swarm::shutdown)).await;
        }
    }
}

impl RoleSpares {
    fn want(&self) -> usize {
        self.role.min_warm.max(1)
    }

    /// A private swarm of one ready agent of the role.
    async fn start_one(&self) -> Result<Swarm, SwarmError> {
        let mut role = RoleConfig::clone(&self.role);
        (role.min_warm, role.max_agents) = (1, 1);
        Swarm::start(Config { roles: BTreeMap::from([(role.name.clone(), role)]), ..Config::default() }).await
    }

    async fn pop_or_start(&self) -> Result<Swarm, SwarmError> {
        let spare = self.ready.lock().unwrap_or_else(std::sync::PoisonError::into_inner).pop();
        match spare {
            Some(swarm) => Ok(swarm),
            None => self.start_one().await,
        }
    }

    /// Starts one spare if fewer than wanted are ready and the role has room.
    async fn refill(self: Arc<Self>) {
        let room =
            |ready: usize| ready < self.want() && ready + self.held.load(Ordering::SeqCst) < self.role.max_agents;
        if !room(self.ready_now()) {
            return;
        }
        match self.start_one().await {
            Ok(swarm) => {
                let kept = {
                    let mut ready = self.ready.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    let keep = !self.stop.is_cancelled() && room(ready.len());
                    if keep {
                        ready.push(swarm.clone());
                    }
                    keep
                };
                if !kept {
                    swarm.shutdown().await;
                }
            }
            Err(e) => tracing::warn!(role = %self.role.name, "cannot start a spare agent: {e}"),
        }
    }

    fn ready_now(&self) -> usize {
        self.ready.lock().unwrap_or_else(std::sync::PoisonError::into_inner).len()
    }
}
