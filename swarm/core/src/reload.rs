//! Hot reload: a new config for a running swarm.
//!
//! A role whose definition did not change keeps its pool, agents, cache and
//! stats untouched. A changed role gets a new pool whose `min_warm` agents are
//! ready before it takes any call; the old pool serves until the swap, then
//! drains: calls already on its agents finish, and only then are its agents
//! stopped. A removed role drains the same way. No call fails because of a
//! reload: one that raced the swap and finds its old pool closed is taken by
//! the role's new pool (`Swarm::call`).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::config::Config;
use crate::pool::Pool;
use crate::swarm::{Roles, Swarm};

/// A caller that took the old roles just before the swap sends its acquire
/// within microseconds; a retired pool waits this long before it judges
/// itself idle.
const DRAIN_SETTLE: Duration = Duration::from_millis(100);
/// How often a draining pool looks for calls still on its agents.
const DRAIN_POLL: Duration = Duration::from_millis(20);

/// What a reload did to each role.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReloadReport {
    /// Unchanged: same agents, cache and stats.
    pub kept: Vec<String>,
    /// Changed: new agents took over, the old ones drained.
    pub replaced: Vec<String>,
    /// New roles.
    pub added: Vec<String>,
    /// Gone from the config: drained and stopped.
    pub removed: Vec<String>,
}

impl Swarm {
    /// Applies `config`'s roles: unchanged ones untouched, changed ones rolled
    /// over (new agents ready first, old ones drained), new ones started,
    /// removed ones drained. Returns once every retired agent has stopped.
    pub async fn reload(&self, config: Config) -> ReloadReport {
        let old = self.current();
        let mut report = ReloadReport::default();
        let mut pools = BTreeMap::new();
        let mut fresh = Vec::new();
        for (name, role) in config.roles {
            match old.pools.get(&name) {
                Some(pool) if *pool.role == role => {
                    report.kept.push(name.clone());
                    pools.insert(name, pool.clone());
                }
                existing => {
                    let list = if existing.is_some() { &mut report.replaced } else { &mut report.added };
                    list.push(name.clone());
                    let pool = Pool::start(role, self.events().clone());
                    fresh.push(pool.clone());
                    pools.insert(name, pool);
                }
            }
        }
        // The new agents warm up while the old pools still serve every call.
        futures::future::join_all(fresh.iter().map(Pool::settled)).await;
        report.removed = old.pools.keys().filter(|name| !pools.contains_key(*name)).cloned().collect();
        let retired: Vec<Pool> =
            report.replaced.iter().chain(&report.removed).filter_map(|name| old.pools.get(name).cloned()).collect();
        drop(old);
        self.swap(Roles::new(pools));
        tracing::info!(?report, "config reloaded");
        futures::future::join_all(retired.into_iter().map(drain)).await;
        report
    }
}

/// Lets the calls on a retired pool's agents finish (within the role's
/// deadlines), then stops its agents.
async fn drain(pool: Pool) {
    tokio::time::sleep(DRAIN_SETTLE).await;
    let deadline = tokio::time::Instant::now() + pool.role.queue_timeout + pool.role.timeout;
    while tokio::time::Instant::now() < deadline {
        match pool.snapshot().await {
            Some((agents, _)) if agents.iter().any(|a| a.in_flight > 0) => tokio::time::sleep(DRAIN_POLL).await,
            _ => break,
        }
    }
    pool.shutdown().await;
}
