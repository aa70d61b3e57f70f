//! Many agents on one task: fan-out (one call per element, all settled, in
//! input order), race (the first success wins, the losers are cancelled on
//! the wire) and broadcast (every live agent of a role, all settled).

use futures::stream::{FuturesUnordered, StreamExt as _};
use serde::Serialize;
use serde_json::value::RawValue;
use skep_bridge::ErrorObjectOwned;

use crate::config::Protocol;
use crate::error::SwarmError;
use crate::swarm::{CallOptions, Swarm};

/// One contender of a race.
#[derive(Debug, Clone)]
pub struct RaceCall {
    pub role: String,
    pub method: String,
    pub params: Option<Box<RawValue>>,
}

/// The winner of a race: its index among the calls and its result.
#[derive(Debug, Clone, Serialize)]
pub struct RaceWin {
    pub index: usize,
    pub result: Box<RawValue>,
}

/// One agent's answer to a broadcast.
#[derive(Debug, Clone, Serialize)]
pub struct BroadcastReply {
    /// `role/N`.
    pub agent: String,
    #[serde(flatten)]
    pub outcome: Settled,
}

/// An all-settled outcome: `{"ok": result}` or `{"error": {code, message, data}}`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Settled {
    Ok(Box<RawValue>),
    Error(ErrorObjectOwned),
}

impl From<Result<Box<RawValue>, SwarmError>> for Settled {
    fn from(result: Result<Box<RawValue>, SwarmError>) -> Self {
        match result {
            Ok(value) => Settled::Ok(value),
            Err(e) => Settled::Error(e.to_error_object()),
        }
    }
}

impl Swarm {
    /// One call of `method` per element of `params`, at most `max_parallel` at
    /// once (default: the role's capacity); results in input order.
    pub async fn fanout(
        &self,
        role: &str,
        method: &str,
        params: Vec<Box<RawValue>>,
        max_parallel: Option<usize>,
        options: CallOptions,
    ) -> Result<Vec<Settled>, SwarmError> {
        let roles = self.current();
        let pool = roles.pool(role)?;
        let capacity = pool.role.max_agents * pool.role.concurrency;
        let parallel = max_parallel.unwrap_or(capacity).max(1);
        let calls =
            params.into_iter().map(|p| async move { Settled::from(self.call(role, method, Some(&p), options).await) });
        Ok(futures::stream::iter(calls).buffered(parallel).collect().await)
    }

    /// Runs the calls at once; the first success wins. The others are
    /// dropped, which cancels them on the wire and gives their agents back
    /// without counting against their roles.
    pub async fn race(&self, calls: Vec<RaceCall>, options: CallOptions) -> Result<RaceWin, SwarmError> {
        let mut running: FuturesUnordered<_> = calls
            .iter()
            .enumerate()
            .map(|(index, c)| async move { (index, self.call(&c.role, &c.method, c.params.as_deref(), options).await) })
            .collect();
        let mut causes: Vec<Option<ErrorObjectOwned>> = vec![None; calls.len()];
        while let Some((index, result)) = running.next().await {
            match result {
                Ok(result) => return Ok(RaceWin { index, result }),
                Err(e) => causes[index] = Some(e.to_error_object()),
            }
        }
        Err(SwarmError::AllFailed { causes: causes.into_iter().flatten().collect() })
    }

    /// Calls `method` on every ready agent of `role`, whatever its load: for
    /// a remote role, every worker's agents; for a spilling one, here and there.
    pub async fn broadcast(
        &self,
        role: &str,
        method: &str,
        params: Option<&RawValue>,
        options: CallOptions,
    ) -> Result<Vec<BroadcastReply>, SwarmError> {
        let reach = self.current().pools.get(role).map(|p| (p.role.protocol == Protocol::Remote, p.role.spill_remote));
        match reach {
            // Boxed: the cluster's broadcasts are rare beside local ones.
            None | Some((true, _)) => Box::pin(self.broadcast_remote(role, method, params, options)).await,
            Some((false, true)) => {
                let there = Box::pin(self.broadcast_remote(role, method, params, options));
                let (here, there) = futures::join!(self.broadcast_here(role, method, params, options), there);
                let mut replies = here?;
                replies.extend(there?);
                Ok(replies)
            }
            Some((false, false)) => self.broadcast_here(role, method, params, options).await,
        }
    }

    /// [`Swarm::broadcast`] over this swarm's own agents.
    async fn broadcast_here(
        &self,
        role: &str,
        method: &str,
        params: Option<&RawValue>,
        options: CallOptions,
    ) -> Result<Vec<BroadcastReply>, SwarmError> {
        let mut roles = self.current();
        let leases = match roles.pool(role)?.acquire_each().await {
            // Drained by a reload before any agent was leased: ask the role's new pool.
            Err(SwarmError::ShuttingDown) => match self.replacement(&roles, role) {
                Some(now) => {
                    roles = now;
                    roles.pool(role)?.acquire_each().await?
                }
                None => return Err(SwarmError::ShuttingDown),
            },
            leases => leases?,
        };
        let pool = roles.pool(role)?;
        let replies = leases.into_iter().map(|lease| async move {
            let agent = lease.agent.to_string();
            let outcome = Settled::from(self.call_on(pool, lease, method, params, options).await);
            BroadcastReply { agent, outcome }
        });
        Ok(futures::future::join_all(replies).await)
    }
}
