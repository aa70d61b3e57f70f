//! The orchestrator's side of a remote role: one call is one NATS request
//! to the role's queue group, and the rules of docs/cluster.md decide what
//! happens when it does not come back.
//!
//! NATS delivers a request at most once, to one worker. So:
//! - no responders: no worker serves the role; the call fails at once (-32003);
//! - a worker answers -32004 or -32005: it did not run the call, so it is
//!   tried once more, whatever the method;
//! - no answer in time (the worker died, or is slow), or the worker that
//!   took it stopped sending heartbeats: the call may have run. A method the
//!   role declares idempotent is tried once more; any other fails with an
//!   error that says it may have run. Either way the worker is told to cancel it.
//!
//! A worker that takes a call whose deadline is longer than its missed-heartbeat
//! bound first says so (a "taken" notice naming it), so the caller can watch
//! that worker's heartbeats and give up on a dead one early.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::{Client, HeaderMap, StatusCode};
use bytes::Bytes;
use futures::future::BoxFuture;
use serde_json::value::RawValue;
use skep_bridge::ErrorObjectOwned;
use skep_swarm::{BroadcastReply, ClusterConfig, RemoteCalls, RoleConfig, SwarmError};

use crate::error::ClusterError;
use crate::heartbeat::Workers;
use crate::inbox::Inbox;

use crate::subjects::{self, Subjects};
use crate::wire;

/// Calls remote roles over a NATS connection; give it to a swarm with `Swarm::set_remote`.
#[derive(Debug)]
pub struct RemoteClient {
    pub(crate) client: Client,
    pub(crate) subjects: Subjects,
    pub(crate) inbox: Inbox,
    pub(crate) workers: Workers,
    /// Unique per client, so call ids from different orchestrators never collide.
    prefix: String,
    next_id: AtomicU64,
}

/// How one request ended.
enum Attempt {
    Answered(Result<Box<RawValue>, ErrorObjectOwned>),
    NoWorkers,
    /// No answer: the call may or may not have run.
    Lost(String),
}

impl RemoteClient {
    /// A client for the cluster `cluster` over `client`: its reply inbox and
    /// its table of workers are subscribed before this returns.
    pub async fn new(client: Client, cluster: &str) -> Result<RemoteClient, ClusterError> {
        let inbox = Inbox::open(&client).await?;
        let workers = Workers::listen(&client, cluster).await?;
        Ok(RemoteClient {
            client,
            subjects: Subjects::new(cluster),
            inbox,
            workers,
            prefix: nuid::next().to_string(),
            next_id: AtomicU64::new(1),
        })
    }

    /// The workers heard from, by their heartbeats.
    pub fn workers(&self) -> &Workers {
        &self.workers
    }

    async fn call_with_retry(
        &self,
        role: &RoleConfig,
        method: &str,
        params: Option<&RawValue>,
        timeout: Duration,
    ) -> Result<Box<RawValue>, SwarmError> {
        let idempotent = role.idempotent.iter().any(|m| m == method);
        let mut tried = false;
        loop {
            let attempt = self.attempt(&role.name, method, params, timeout).await;
            let retry = match &attempt {
                Attempt::Answered(Err(e)) => wire::not_run(e.code()),
                Attempt::Lost(_) => idempotent,
                Attempt::Answered(Ok(_)) | Attempt::NoWorkers => false,
            };
            if retry && !tried {
                tried = true;
                tracing::debug!(role = %role.name, method, "trying another worker");
                continue;
            }
            return match attempt {
                Attempt::Answered(Ok(result)) => Ok(result),
                Attempt::Answered(Err(e)) => Err(SwarmError::Agent(e)),
                Attempt::NoWorkers => Err(SwarmError::NoWorkers { role: role.name.clone() }),
                Attempt::Lost(_) if idempotent => {
                    Err(SwarmError::Timeout { role: role.name.clone(), agent: "remote".to_owned(), after: timeout })
                }
                Attempt::Lost(reason) => Err(SwarmError::RemoteLost {
                    role: role.name.clone(),
                    method: method.to_owned(),
                    after: timeout,
                    reason,
                }),
            };
        }
    }

    /// A fresh call id and the request's headers naming it, `method` and `timeout`.
    pub(crate) fn request(&self, method: &str, timeout: Duration) -> (String, HeaderMap) {
        let id = format!("{}.{}", self.prefix, self.next_id.fetch_add(1, Ordering::Relaxed));
        let mut headers = HeaderMap::new();
        headers.insert(subjects::METHOD, method);
        headers.insert(subjects::CALL_ID, id.as_str());
        headers.insert(subjects::DEADLINE_MS, timeout.as_millis().to_string().as_str());
        (id, headers)
    }

    async fn attempt(&self, role: &str, method: &str, params: Option<&RawValue>, timeout: Duration) -> Attempt {
        let (id, headers) = self.request(method, timeout);
        let payload = params.map_or_else(Bytes::new, |p| Bytes::copy_from_slice(p.get().as_bytes()));
        let mut replies = self.inbox.register();
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let sent = self.client.publish_with_reply_and_headers(
            self.subjects.call(role),
            replies.subject.clone(),
            headers,
            payload,
        );
        if let Err(e) = sent.await {
            return Attempt::Lost(format!("the request could not be sent: {e}"));
        }
        // Armed until an answer arrives: a timeout, a dead worker, or the
        // caller dropping this future tells the worker to cancel the call.
        let mut cancel = CancelOnDrop { client: &self.client, subject: self.subjects.cancel(), id: Some(id) };
        let mut taken_by: Option<String> = None;
        loop {
            let gone = async {
                match &taken_by {
                    Some(worker) => self.workers.gone(worker).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                message = replies.messages.recv() => {
                    let Some(message) = message else {
                        return Attempt::Lost("the reply inbox closed".to_owned());
                    };
                    if message.status == Some(StatusCode::NO_RESPONDERS) {
                        cancel.id = None;
                        return Attempt::NoWorkers;
                    }
                    let taken = message.headers.as_ref().and_then(|h| h.get(subjects::TAKEN_BY));
                    if let Some(worker) = taken {
                        taken_by = Some(worker.as_str().to_owned());
                        continue;
                    }
                    cancel.id = None;
                    return Attempt::Answered(wire::decode(&message.payload));
                }
                () = &mut deadline => return Attempt::Lost("the worker did not answer in time".to_owned()),
                () = gone => {
                    let worker = taken_by.unwrap_or_default();
                    return Attempt::Lost(format!("worker {worker} that took the call missed its heartbeats"));
                }
            }
        }
    }
}

impl RemoteCalls for RemoteClient {
    fn call<'a>(
        &'a self,
        role: &'a RoleConfig,
        method: &'a str,
        params: Option<&'a RawValue>,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Box<RawValue>, SwarmError>> {
        Box::pin(self.call_with_retry(role, method, params, timeout))
    }

    fn broadcast<'a>(
        &'a self,
        role: &'a str,
        method: &'a str,
        params: Option<&'a RawValue>,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Vec<BroadcastReply>, SwarmError>> {
        Box::pin(self.broadcast_all(role, method, params, timeout))
    }

    fn serves(&self, role: &str) -> bool {
        self.workers.serve(role)
    }

    fn workers(&self) -> Vec<skep_swarm::RemoteWorker> {
        self.workers.view()
    }
}

/// Publishes the call's id on the cancel subject when dropped still armed.
pub(crate) struct CancelOnDrop<'a> {
    pub(crate) client: &'a Client,
    pub(crate) subject: String,
    pub(crate) id: Option<String>,
}

impl Drop for CancelOnDrop<'_> {
    fn drop(&mut self) {
        let Some(id) = self.id.take() else { return };
        // Drop cannot wait: the publish goes on in its own task.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        let (client, subject) = (self.client.clone(), std::mem::take(&mut self.subject));
        runtime.spawn(async move {
            if let Err(e) = client.publish(subject, Bytes::from(id)).await {
                tracing::debug!(%e, "cannot publish a cancellation");
            }
        });
    }
}

impl RemoteClient {
    /// Connects to `config`'s server (see [`crate::connect`]) and makes a client over it.
    pub async fn connect(config: &ClusterConfig, name: &str) -> Result<RemoteClient, ClusterError> {
        let client = crate::connect::connect(config, name).await?;
        RemoteClient::new(client, &config.name).await
    }

    /// The NATS connection, for listening to heartbeats on it too.
    pub fn nats(&self) -> &Client {
        &self.client
    }
}
