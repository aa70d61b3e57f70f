//! The orchestrator's side of a remote role: one call is one NATS request
//! to the role's queue group, and the rules of docs/cluster.md decide what
//! happens when it does not come back.
//!
//! NATS delivers a request at most once, to one worker. So:
//! - no responders: no worker serves the role; the call fails at once (-32003);
//! - a worker answers -32004 or -32005: it did not run the call, so it is
//!   tried again, whatever the method: at once, then after 1, 2, 4 ... 64 ms,
//!   for as long as the call's timeout lasts (NATS picks a worker each time,
//!   and the one with room may not be picked at the first try). A spilling
//!   role tries once more only, then waits for its own local agents;
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

/// When to try again a call that a worker did not run (-32004, -32005).
struct NotRun {
    started: tokio::time::Instant,
    timeout: Duration,
    tries: u32,
    /// A spilling role has local agents to wait for: one more try only.
    spilling: bool,
}

impl NotRun {
    fn new(timeout: Duration, spilling: bool) -> NotRun {
        NotRun { started: tokio::time::Instant::now(), timeout, tries: 0, spilling }
    }

    /// What is left of the call's timeout.
    fn left(&self) -> Duration {
        self.timeout.saturating_sub(self.started.elapsed())
    }

    /// The pause before the next try, or `None` when there is no next try:
    /// at once, then 1, 2, 4 ... 64 ms, while the timeout lasts.
    fn next_pause(&mut self) -> Option<Duration> {
        if self.spilling && self.tries >= 1 {
            return None;
        }
        let pause = match self.tries {
            0 => Duration::ZERO,
            n => Duration::from_millis(1 << (n - 1).min(6)),
        };
        self.tries += 1;
        (pause < self.left()).then_some(pause)
    }
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
        let mut lost_retried = false;
        let mut not_run = NotRun::new(timeout, role.spill_remote);
        loop {
            let attempt = self.attempt(&role.name, method, params, not_run.left()).await;
            match &attempt {
                Attempt::Answered(Err(e)) if wire::not_run(e.code()) => {
                    if let Some(pause) = not_run.next_pause() {
                        tracing::debug!(role = %role.name, method, ?pause, "no room on that worker; trying again");
                        tokio::time::sleep(pause).await;
                        continue;
                    }
                }
                Attempt::Lost(_) if idempotent && !lost_retried => {
                    lost_retried = true;
                    // The second try of a lost call gets a whole timeout of its own, as the first did.
                    not_run = NotRun::new(timeout, role.spill_remote);
                    tracing::debug!(role = %role.name, method, "answer lost; trying another worker");
                    continue;
                }
                _ => {}
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::NotRun;

    /// Pauses until the timeout is spent, each pause advanced on the paused clock.
    async fn pauses(mut not_run: NotRun) -> Vec<u64> {
        let mut seen = Vec::new();
        while let Some(pause) = not_run.next_pause() {
            seen.push(pause.as_millis() as u64);
            tokio::time::advance(pause).await;
        }
        seen
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_no_worker_ran_is_tried_again_with_a_growing_pause_until_its_timeout() {
        let seen = pauses(NotRun::new(Duration::from_millis(300), false)).await;
        assert_eq!(seen, [0, 1, 2, 4, 8, 16, 32, 64, 64, 64]);
        assert!(seen.iter().sum::<u64>() < 300);
    }

    #[tokio::test(start_paused = true)]
    async fn a_spilling_role_tries_once_more_then_waits_for_its_own_agents() {
        assert_eq!(pauses(NotRun::new(Duration::from_secs(30), true)).await, [0]);
    }
}
