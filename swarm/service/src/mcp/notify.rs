//! `notifications/{tools,resources,prompts}/list_changed` to every open
//! session, on either transport, when what a merged list would say may have
//! changed:
//! - an upstream server announced it (its role's cache is dropped first, so
//!   the next list asks the server); only the list it named is relayed;
//! - a role left out of an answer (it had no ready agent, or was slow)
//!   became ready, or a reload added, changed or removed roles: every list.
//!
//! Sessions register on `notifications/initialized` and leave when their
//! server (the last clone of it) goes; a session whose transport has closed
//! is dropped at the next broadcast too.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rmcp::{Peer, RoleServer};
use skep_swarm::{Event, McpListKind, mcp_list_changes};
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use super::handler::Shared;

/// How long one session may take to accept a notification before it is skipped.
const SEND_TIMEOUT: Duration = Duration::from_secs(2);

/// The sessions to tell, and the roles the last lists had to leave out.
#[derive(Debug, Default)]
pub(crate) struct Listeners {
    next: AtomicU64,
    peers: Mutex<Vec<(u64, Peer<RoleServer>)>>,
    left_out: Mutex<HashSet<String>>,
}

impl Listeners {
    /// Registers a session's peer; the id is for [`Listeners::remove`].
    pub(crate) fn add(&self, peer: Peer<RoleServer>) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        lock(&self.peers).push((id, peer));
        id
    }

    /// Forgets a session that ended.
    pub(crate) fn remove(&self, id: u64) {
        lock(&self.peers).retain(|(each, _)| *each != id);
    }

    /// Notes that a list was answered without `role`: its becoming ready changes the list.
    pub(crate) fn left_out(&self, role: &str) {
        lock(&self.left_out).insert(role.to_owned());
    }

    /// Sends `<kind>/list_changed` for each of `kinds` to every open session.
    pub(crate) async fn changed(&self, kinds: &[McpListKind]) {
        lock(&self.peers).retain(|(_, peer)| !peer.is_transport_closed());
        let peers: Vec<Peer<RoleServer>> = lock(&self.peers).iter().map(|(_, p)| p.clone()).collect();
        tracing::debug!(sessions = peers.len(), ?kinds, "telling the sessions lists changed");
        // Concurrently and bounded: one stalled client must not hold up the others.
        futures::future::join_all(peers.iter().map(|peer| async move {
            for &kind in kinds {
                match tokio::time::timeout(SEND_TIMEOUT, tell(peer, kind)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::debug!(%e, ?kind, "a session could not be told a list changed"),
                    Err(_) => tracing::debug!(?kind, "a session took too long to take a list_changed; skipped"),
                }
            }
        }))
        .await;
    }
}

/// Every list: what a role becoming ready or a reload may change.
pub(crate) const ALL_LISTS: [McpListKind; 3] = [McpListKind::Tools, McpListKind::Resources, McpListKind::Prompts];

async fn tell(peer: &Peer<RoleServer>, kind: McpListKind) -> Result<(), rmcp::service::ServiceError> {
    match kind {
        McpListKind::Tools => peer.notify_tool_list_changed().await,
        McpListKind::Resources => peer.notify_resource_list_changed().await,
        McpListKind::Prompts => peer.notify_prompt_list_changed().await,
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Relays list changes to the sessions until `stop`.
pub(crate) async fn watch(shared: Arc<Shared>, stop: CancellationToken) {
    let mut changes = mcp_list_changes();
    let mut events = shared.swarm.subscribe();
    loop {
        tokio::select! {
            change = changes.recv() => match change {
                Ok(change) => {
                    shared.swarm.clear_cache(&change.role);
                    shared.listeners.changed(&[change.kind]).await;
                }
                // Some were missed: any role may have changed.
                Err(RecvError::Lagged(_)) => {
                    for role in super::catalog::offering(&shared.swarm) {
                        shared.swarm.clear_cache(&role.name);
                    }
                    shared.listeners.changed(&ALL_LISTS).await;
                }
                Err(RecvError::Closed) => return,
            },
            event = events.recv() => {
                let ready = match event {
                    Ok(Event::AgentReady { role, .. }) => lock(&shared.listeners.left_out).remove(&role),
                    Ok(_) => false,
                    Err(RecvError::Lagged(_)) => !std::mem::take(&mut *lock(&shared.listeners.left_out)).is_empty(),
                    Err(RecvError::Closed) => return,
                };
                if ready {
                    shared.listeners.changed(&ALL_LISTS).await;
                }
            }
            () = stop.cancelled() => return,
        }
    }
}
