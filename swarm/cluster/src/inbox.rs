//! The orchestrator's one reply inbox: a single wildcard subscription whose
//! messages are routed to the call waiting for them. A call can get more
//! than one message (the worker's "taken" notice, then its answer), which
//! async-nats's `request` (first message only) cannot give.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use async_nats::{Client, Message};
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::error::ClusterError;

type Waiting = Arc<Mutex<HashMap<u64, mpsc::UnboundedSender<Message>>>>;

/// The inbox; dropping it stops its routing task.
#[derive(Debug)]
pub(crate) struct Inbox {
    prefix: String,
    next: AtomicU64,
    waiting: Waiting,
    task: JoinHandle<()>,
}

/// The messages for one call; dropping it forgets the call, so a late reply is dropped.
#[derive(Debug)]
pub(crate) struct Replies {
    pub subject: String,
    pub messages: mpsc::UnboundedReceiver<Message>,
    token: u64,
    waiting: Waiting,
}

impl Drop for Replies {
    fn drop(&mut self) {
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner).remove(&self.token);
    }
}

impl Drop for Inbox {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Inbox {
    /// Subscribes to a fresh inbox of `client`'s and starts routing it.
    pub(crate) async fn open(client: &Client) -> Result<Inbox, ClusterError> {
        let prefix = client.new_inbox();
        let subject = format!("{prefix}.*");
        let mut replies =
            client.subscribe(subject.clone()).await.map_err(|source| ClusterError::Subscribe { subject, source })?;
        let waiting: Waiting = Arc::default();
        let routes = Arc::clone(&waiting);
        let task = tokio::spawn(async move {
            while let Some(message) = replies.next().await {
                let Some(token) = message.subject.rsplit('.').next().and_then(|t| t.parse::<u64>().ok()) else {
                    continue;
                };
                let to = routes.lock().unwrap_or_else(PoisonError::into_inner).get(&token).cloned();
                // No one waiting: a reply after its call's timeout or cancel.
                if let Some(to) = to {
                    let _ = to.send(message);
                }
            }
        });
        Ok(Inbox { prefix, next: AtomicU64::new(1), waiting, task })
    }

    /// A reply subject of its own for one call.
    pub(crate) fn register(&self) -> Replies {
        let token = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, messages) = mpsc::unbounded_channel();
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner).insert(token, tx);
        Replies { subject: format!("{}.{token}", self.prefix), messages, token, waiting: Arc::clone(&self.waiting) }
    }
}
