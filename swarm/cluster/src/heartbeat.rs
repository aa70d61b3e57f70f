//! What a worker says about itself every interval on `skep.<cluster>.workers`,
//! and the table an orchestrator keeps of the workers it has heard from.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use skep_swarm::{RemoteAgent, RemoteWorker, RoleLoad};
use tokio::sync::watch;

use crate::error::ClusterError;
use crate::subjects::Subjects;

/// One worker's heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Heartbeat {
    /// The worker's id: `host-pid`, unique while it runs.
    pub id: String,
    /// The host it runs on.
    pub host: String,
    /// Its process id on that host.
    pub pid: u32,
    /// The roles it serves, each with its capacity and calls in flight.
    pub roles: Vec<RoleLoad>,
    /// Calls it takes at once, over all roles.
    pub capacity: usize,
    /// Calls in flight now, over all roles.
    pub load: usize,
    /// It is draining: it takes no new calls and will be gone soon.
    pub draining: bool,
    /// How often it sends a heartbeat, so a reader knows when one is missed.
    pub interval_ms: u64,
    /// Its agents, so an orchestrator can show them (absent from a first-round worker's heartbeat).
    #[serde(default)]
    pub agents: Vec<RemoteAgent>,
}

impl Heartbeat {
    /// How long after this heartbeat its worker counts as gone.
    fn bound(&self) -> Duration {
        Duration::from_millis(self.interval_ms) * MISSED
    }
}

/// Heartbeats missed before a worker counts as gone.
pub(crate) const MISSED: u32 = 3;

/// The workers an orchestrator has heard from, kept current by a task that
/// reads their heartbeats; dropping it stops the task.
#[derive(Debug)]
pub struct Workers {
    seen: watch::Receiver<BTreeMap<String, (Heartbeat, Instant)>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Workers {
    /// Starts listening to `cluster`'s heartbeats.
    pub async fn listen(client: &async_nats::Client, cluster: &str) -> Result<Workers, ClusterError> {
        let subject = Subjects::new(cluster).workers();
        let mut heartbeats =
            client.subscribe(subject.clone()).await.map_err(|source| ClusterError::Subscribe { subject, source })?;
        let (tx, seen) = watch::channel(BTreeMap::new());
        let task = tokio::spawn(async move {
            while let Some(message) = heartbeats.next().await {
                let Ok(beat) = serde_json::from_slice::<Heartbeat>(&message.payload) else {
                    tracing::debug!("ignoring a heartbeat that does not parse");
                    continue;
                };
                let now = Instant::now();
                tx.send_modify(|seen| {
                    // Workers gone for good would otherwise stay in the table forever.
                    seen.retain(|_, (old, at): &mut (Heartbeat, Instant)| now.duration_since(*at) < old.bound());
                    seen.insert(beat.id.clone(), (beat, now));
                });
            }
        });
        Ok(Workers { seen, task })
    }

    /// Workers heard from within the last few of their intervals and not draining, by id.
    pub fn alive(&self) -> Vec<Heartbeat> {
        let now = Instant::now();
        let seen = self.seen.borrow();
        seen.values()
            .filter(|(beat, at)| !beat.draining && now.duration_since(*at) < beat.bound())
            .map(|(beat, _)| beat.clone())
            .collect()
    }

    /// Whether a live worker that is not draining serves `role`.
    pub fn serve(&self, role: &str) -> bool {
        let now = Instant::now();
        (self.seen.borrow().values()).any(|(beat, at)| {
            !beat.draining && now.duration_since(*at) < beat.bound() && beat.roles.iter().any(|r| r.role == role)
        })
    }

    /// Workers not yet past their missed heartbeats, draining ones included,
    /// as `swarm/stats` shows them.
    pub fn view(&self) -> Vec<RemoteWorker> {
        let now = Instant::now();
        let seen = self.seen.borrow();
        (seen.values())
            .filter(|(beat, at)| now.duration_since(*at) < beat.bound())
            .map(|(beat, at)| RemoteWorker {
                id: beat.id.clone(),
                host: beat.host.clone(),
                pid: beat.pid,
                draining: beat.draining,
                age_ms: now.duration_since(*at).as_millis() as u64,
                interval_ms: beat.interval_ms,
                capacity: beat.capacity,
                load: beat.load,
                roles: beat.roles.clone(),
                agents: beat.agents.clone(),
            })
            .collect()
    }

    /// Resolves once worker `id` has missed [`MISSED`] heartbeats in a row;
    /// never for a worker not heard from yet (its calls end at their timeout).
    pub(crate) async fn gone(&self, id: &str) {
        let mut seen = self.seen.clone();
        loop {
            let due = seen.borrow_and_update().get(id).map(|(beat, at)| *at + beat.bound());
            let news = async {
                if seen.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            };
            match due {
                Some(due) if Instant::now() >= due => return,
                Some(due) => tokio::select! {
                    () = tokio::time::sleep_until(due.into()) => {}
                    () = news => {}
                },
                None => news.await,
            }
        }
    }

    /// Waits until `ready` holds for the live workers, or `within` passes; returns whether it held.
    pub async fn wait_for(&self, within: Duration, ready: impl Fn(&[Heartbeat]) -> bool) -> bool {
        let mut seen = self.seen.clone();
        tokio::time::timeout(within, async {
            loop {
                if ready(&self.alive()) {
                    return;
                }
                if seen.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        })
        .await
        .is_ok()
    }
}

/// This host's name, as the kernel knows it.
pub(crate) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map_or_else(|_| "unknown".to_owned(), |h| h.trim().to_owned())
}
