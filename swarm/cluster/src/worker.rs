//! The worker's side: its local pools served over NATS, one queue group per
//! role, within a capacity per role, cancellable by the caller, drained on
//! request.
//!
//! - **Capacity.** Each role takes at most `max_agents × concurrency` calls at
//!   once (its pool's own bound); past it a call is answered -32004 at once,
//!   so its caller tries another worker instead of queueing here unseen.
//!   The same semaphore counts the calls in flight for heartbeats and drain.
//! - **Deadline.** The caller's deadline header bounds the local call, plus a
//!   margin: the caller cancels first (its cancel subject), and the margin
//!   only ends calls whose caller vanished without a word.
//! - **Cancellation.** A call id published on the cancel subject drops the
//!   local call, which sends `$/cancelRequest` to its agent (bridge invariant 4).
//! - **Drain.** Unsubscribe each role (NATS drain: messages already on their
//!   way are still delivered and served), wait for calls in flight up to a
//!   grace period, stop the agents (what still runs fails, and its caller is
//!   answered), then send a last heartbeat saying so.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_nats::{Client, Message, Subscriber};
use bytes::Bytes;
use futures::StreamExt;
use serde_json::value::RawValue;
use skep_bridge::{ErrorObjectOwned, code};
use skep_swarm::{CallOptions, ClusterConfig, Protocol, RemoteAgent, RoleLoad, Swarm, is_subject_token};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::error::ClusterError;
use crate::heartbeat::{Heartbeat, MISSED, hostname};
use crate::requests::Requests;
use crate::subjects::{self, Subjects};
use crate::wire;

/// How long past the caller's deadline a call may run before the worker ends it itself.
const DEADLINE_MARGIN: Duration = Duration::from_secs(1);

/// Broadcasts a worker serves at once; past it, -32004.
pub(crate) const BROADCASTS_AT_ONCE: usize = 64;

/// How long calls cut off by the agents' stop have to send their error replies.
const REPLY_GRACE: Duration = Duration::from_secs(5);

/// How a worker serves.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// How long a drain waits for calls in flight before giving up on them.
    pub grace: Duration,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        WorkerOptions { grace: Duration::from_secs(30) }
    }
}

/// A running worker; [`Worker::drain`] stops it in order.
#[derive(Debug)]
pub struct Worker {
    id: String,
    client: Client,
    swarm: Swarm,
    roles: Vec<ServedRole>,
    broadcasts: Arc<Semaphore>,
    stop: CancellationToken,
    loops: Vec<JoinHandle<()>>,
    heartbeat: JoinHandle<()>,
    cancels: JoinHandle<()>,
    grace: Duration,
}

/// What a drain saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrainReport {
    /// Calls still running when the grace period ended (they fail as the agents stop).
    pub abandoned: usize,
}

#[derive(Debug, Clone)]
struct ServedRole {
    name: String,
    capacity: usize,
    slots: Arc<Semaphore>,
}

/// Calls in flight by id, for the cancel subject. A mutex held for one
/// insert or remove: routing through an owner task would add a hop per call.
type InFlight = Arc<Mutex<HashMap<String, CancellationToken>>>;

/// What every call handler of a worker shares.
#[derive(Debug, Clone)]
pub(crate) struct Context {
    pub(crate) client: Client,
    pub(crate) swarm: Swarm,
    in_flight: InFlight,
    pub(crate) worker: Arc<str>,
    /// Calls with a deadline past this (the missed-heartbeat bound) are
    /// first answered with a "taken" notice, so their caller can tell if we die.
    notice_after: Duration,
    /// Places for broadcasts at once, apart from the roles' call capacity
    /// (a broadcast reaches agents whatever their load); drain waits for them too.
    pub(crate) broadcasts: Arc<Semaphore>,
}

impl Context {
    /// Runs `work` until it ends or the caller cancels call `id` on the cancel subject (then `None`).
    pub(crate) async fn cancellable<T>(&self, id: Option<&str>, work: impl Future<Output = T>) -> Option<T> {
        let Some(id) = id else { return Some(work.await) };
        let cancelled = CancellationToken::new();
        self.in_flight.lock().unwrap_or_else(PoisonError::into_inner).insert(id.to_owned(), cancelled.clone());
        let result = tokio::select! {
            result = work => Some(result),
            () = cancelled.cancelled() => None,
        };
        self.in_flight.lock().unwrap_or_else(PoisonError::into_inner).remove(id);
        result
    }
}

/// A request's headers and params, as a worker reads them.
pub(crate) struct Request {
    pub(crate) method: String,
    pub(crate) params: Option<Box<RawValue>>,
    /// The caller's timeout, from `Skep-Deadline-Ms`.
    pub(crate) deadline: Option<Duration>,
    pub(crate) id: Option<String>,
}

impl Request {
    /// Reads `message`; a request without a method or with params that are not JSON is the caller's error.
    pub(crate) fn parse(message: &Message) -> Result<Request, ErrorObjectOwned> {
        let header = |name: &str| message.headers.as_ref().and_then(|h| h.get(name)).map(|v| v.as_str().to_owned());
        let Some(method) = header(subjects::METHOD) else {
            return Err(ErrorObjectOwned::owned(code::INVALID_REQUEST, "a call without a method header", None::<()>));
        };
        let params = match message.payload.is_empty() {
            true => None,
            false => {
                match std::str::from_utf8(&message.payload).ok().and_then(|t| RawValue::from_string(t.into()).ok()) {
                    Some(params) => Some(params),
                    None => {
                        return Err(ErrorObjectOwned::owned(code::PARSE_ERROR, "the params are not JSON", None::<()>));
                    }
                }
            }
        };
        let deadline = header(subjects::DEADLINE_MS).and_then(|ms| ms.parse().ok()).map(Duration::from_millis);
        Ok(Request { method, params, deadline, id: header(subjects::CALL_ID) })
    }
}

impl Worker {
    /// Serves every local role of `swarm` (not its remote ones) on `cluster`;
    /// [`Worker::drain`] stops the swarm's agents.
    pub async fn start(
        client: Client,
        swarm: Swarm,
        cluster: &ClusterConfig,
        options: WorkerOptions,
    ) -> Result<Worker, ClusterError> {
        let subjects = Subjects::new(&cluster.name);
        let host = hostname();
        let id = format!("{host}-{}", std::process::id());
        let mut roles = Vec::new();
        for role in swarm.config().roles.into_values().filter(|r| r.protocol != Protocol::Remote) {
            if !is_subject_token(&role.name) {
                let reason = "its name has a dot, which NATS reads as a subject separator".to_owned();
                return Err(ClusterError::Role { role: role.name, reason });
            }
            let capacity = role.max_agents.saturating_mul(role.concurrency).max(1);
            roles.push(ServedRole { name: role.name, capacity, slots: Arc::new(Semaphore::new(capacity)) });
        }
        let stop = CancellationToken::new();
        let in_flight: InFlight = Arc::default();
        let cx = Context {
            client: client.clone(),
            swarm: swarm.clone(),
            in_flight: Arc::clone(&in_flight),
            worker: id.clone().into(),
            notice_after: cluster.heartbeat * MISSED,
            broadcasts: Arc::new(Semaphore::new(BROADCASTS_AT_ONCE)),
        };
        // Cancellations first: one must never find us not yet listening.
        let cancel_subject = subjects.cancel();
        let cancel_sub = client
            .subscribe(cancel_subject.clone())
            .await
            .map_err(|source| ClusterError::Subscribe { subject: cancel_subject, source })?;
        let cancels = tokio::spawn(cancel_loop(cancel_sub, in_flight));
        let mut loops = Vec::new();
        for role in &roles {
            let subject = subjects.call(&role.name);
            let sub = client
                .queue_subscribe(subject.clone(), role.name.clone())
                .await
                .map_err(|source| ClusterError::Subscribe { subject, source })?;
            loops.push(tokio::spawn(role_loop(cx.clone(), role.clone(), sub, stop.clone())));
            let subject = subjects.broadcast(&role.name);
            let sub = client
                .subscribe(subject.clone())
                .await
                .map_err(|source| ClusterError::Subscribe { subject, source })?;
            loops.push(tokio::spawn(crate::broadcast::serve_loop(cx.clone(), role.name.clone(), sub, stop.clone())));
        }
        let beat =
            Beat { id: id.clone(), host, roles: roles.clone(), interval: cluster.heartbeat, swarm: swarm.clone() };
        let heartbeat = tokio::spawn(heartbeat_loop(client.clone(), subjects.workers(), beat, stop.clone()));
        // Subscriptions are in place on the server once this returns, so the
        // caller may announce the worker as ready.
        if let Err(e) = client.flush().await {
            tracing::warn!(%e, "cannot flush the subscriptions");
        }
        tracing::info!(worker = %id, roles = roles.len(), "serving over NATS");
        let broadcasts = cx.broadcasts;
        Ok(Worker { id, client, swarm, roles, broadcasts, stop, loops, heartbeat, cancels, grace: options.grace })
    }

    /// The worker's id (`host-pid`), as its heartbeats carry it.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Stops taking calls, lets those in flight finish within the grace
    /// period, stops the agents (calls still running then fail, and their
    /// callers are told so), and stops heartbeats.
    pub async fn drain(self) -> DrainReport {
        self.stop.cancel();
        for handle in self.loops {
            let _ = handle.await;
        }
        let returned = || async { tokio::join!(all_returned(&self.roles), broadcasts_returned(&self.broadcasts)) };
        let abandoned = match tokio::time::timeout(self.grace, returned()).await {
            Ok(_) => 0,
            Err(_) => self.roles.iter().map(|r| r.capacity - r.slots.available_permits()).sum(),
        };
        self.swarm.shutdown().await;
        // The calls cut off by the shutdown answer their callers now; without
        // this their replies could die with the process.
        if tokio::time::timeout(REPLY_GRACE, returned()).await.is_err() {
            tracing::warn!("calls still unanswered after the agents stopped");
        }
        let _ = self.heartbeat.await;
        self.cancels.abort();
        if let Err(e) = self.client.flush().await {
            tracing::debug!(%e, "cannot flush the last replies");
        }
        tracing::info!(worker = %self.id, abandoned, "drained");
        DrainReport { abandoned }
    }
}

/// Resolves once every role's slots are back: no call is in flight.
async fn all_returned(roles: &[ServedRole]) {
    for role in roles {
        let all = u32::try_from(role.capacity).unwrap_or(u32::MAX);
        // Closed only with the semaphore, which nothing here closes; dropped at once.
        let _ = role.slots.acquire_many(all).await;
    }
}

/// Resolves once no broadcast is in flight.
async fn broadcasts_returned(broadcasts: &Semaphore) {
    // Closed only with the semaphore, which nothing here closes; dropped at once.
    let _ = broadcasts.acquire_many(BROADCASTS_AT_ONCE as u32).await;
}

async fn role_loop(cx: Context, role: ServedRole, sub: Subscriber, stop: CancellationToken) {
    let mut requests = Requests::new(sub, stop, format!("calls of {}", role.name));
    while let Some((message, reply)) = requests.next().await {
        match Arc::clone(&role.slots).try_acquire_owned() {
            Ok(slot) => {
                let cx = cx.clone();
                let name = role.name.clone();
                tokio::spawn(async move {
                    let answer = serve_call(&cx, &name, &reply, message).await;
                    drop(slot);
                    publish(&cx.client, reply.to_string(), answer).await;
                });
            }
            Err(_) => {
                let message = format!(
                    "worker {} is at capacity for role {} ({} calls in flight)",
                    cx.worker, role.name, role.capacity
                );
                let data = serde_json::json!({ "role": role.name, "worker": &*cx.worker, "capacity": role.capacity });
                let error = ErrorObjectOwned::owned(code::OVERLOADED, message, Some(data));
                publish(&cx.client, reply.to_string(), wire::encode_error(&error)).await;
            }
        }
    }
}

/// Runs one call on the local pool and returns the reply's bytes.
async fn serve_call(cx: &Context, role: &str, reply: &str, message: Message) -> Bytes {
    let request = match Request::parse(&message) {
        Ok(request) => request,
        Err(error) => return wire::encode_error(&error),
    };
    if request.deadline.is_none_or(|d| d > cx.notice_after) {
        let mut notice = async_nats::HeaderMap::new();
        notice.insert(subjects::TAKEN_BY, &*cx.worker);
        if let Err(e) = cx.client.publish_with_headers(reply.to_owned(), notice, Bytes::new()).await {
            tracing::debug!(%e, "cannot publish a taken notice");
        }
    }
    let options = CallOptions { timeout: request.deadline.map(|d| d + DEADLINE_MARGIN), ..CallOptions::default() };
    let call = cx.swarm.call(role, &request.method, request.params.as_deref(), options);
    match cx.cancellable(request.id.as_deref(), call).await {
        Some(result) => wire::encode(&result),
        // Nobody waits for this answer; it is sent so the reply subject is not left hanging.
        None => {
            let error = ErrorObjectOwned::owned(code::REQUEST_CANCELLED, "cancelled by the caller", None::<()>);
            wire::encode_error(&error)
        }
    }
}

pub(crate) async fn publish(client: &Client, subject: String, payload: Bytes) {
    if let Err(e) = client.publish(subject, payload).await {
        tracing::warn!(%e, "cannot publish a reply");
    }
}

async fn cancel_loop(mut sub: Subscriber, in_flight: InFlight) {
    while let Some(message) = sub.next().await {
        let Ok(id) = std::str::from_utf8(&message.payload) else { continue };
        let token = in_flight.lock().unwrap_or_else(PoisonError::into_inner).get(id).cloned();
        if let Some(token) = token {
            tracing::debug!(call = id, "cancelled by its caller");
            token.cancel();
        }
    }
}

/// What a heartbeat is made from.
struct Beat {
    id: String,
    host: String,
    roles: Vec<ServedRole>,
    interval: Duration,
    swarm: Swarm,
}

impl Beat {
    async fn now(&self, draining: bool) -> Heartbeat {
        // A drained swarm has no agents left to show; its last heartbeat says so.
        let agents = match draining {
            true => Vec::new(),
            false => (self.swarm.agents().await.into_iter())
                .map(|a| RemoteAgent {
                    id: a.id,
                    role: a.role,
                    pid: a.pid,
                    state: a.state.to_owned(),
                    calls: a.calls,
                    in_flight: a.in_flight,
                })
                .collect(),
        };
        let roles: Vec<RoleLoad> = (self.roles.iter())
            .map(|r| RoleLoad {
                role: r.name.clone(),
                capacity: r.capacity,
                in_flight: r.capacity - r.slots.available_permits(),
            })
            .collect();
        Heartbeat {
            id: self.id.clone(),
            host: self.host.clone(),
            pid: std::process::id(),
            capacity: roles.iter().map(|r| r.capacity).sum(),
            load: roles.iter().map(|r| r.in_flight).sum(),
            roles,
            draining,
            interval_ms: self.interval.as_millis() as u64,
            agents,
        }
    }
}

/// Publishes a heartbeat every interval until `stop`, then a last one saying it drains.
async fn heartbeat_loop(client: Client, subject: String, beat: Beat, stop: CancellationToken) {
    let mut tick = tokio::time::interval(beat.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let draining = tokio::select! {
            _ = tick.tick() => false,
            () = stop.cancelled() => true,
        };
        let payload = serde_json::to_vec(&beat.now(draining).await).expect("a heartbeat serializes");
        if let Err(e) = client.publish(subject.clone(), payload.into()).await {
            tracing::debug!(%e, "cannot publish a heartbeat");
        }
        if draining {
            return;
        }
    }
}
