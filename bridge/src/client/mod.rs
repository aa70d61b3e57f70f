//! A JSON-RPC client over any byte stream, built for untrusted peers.
//!
//! jsonrpsee's client treats a reply with an unknown id as fatal and keeps a
//! timed-out call pending until its late reply arrives, so the bridge has its
//! own: a reply nobody waits for is dropped and counted, a timed-out or dropped
//! call releases its entry at once and tells the peer to cancel it
//! (`$/cancelRequest`, or MCP's `notifications/cancelled`), and a
//! peer that goes away fails every waiting call at once.
//!
//! Three parties share a connection: callers (any number of [`Client`]
//! clones) encode requests, register a waiter and hand the frame to the
//! outbox (`outbox.rs`), which writes it on the caller's thread when the
//! stream is idle and otherwise queues it for the writer task; one reader
//! task owns the input and completes waiters. The waiter map and the outbox
//! are the only shared state, each locked briefly and never across an
//! `.await`.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};

use jsonrpsee::types::ErrorObjectOwned;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::buffers::BufferPool;
use crate::code;
use crate::framing::{Frame, FrameReader, Framing, frame_in_place};
use crate::message::{self, Incoming, Payload};
use crate::server::CANCEL_METHOD;
use outbox::Outbox;

mod outbox;
mod types;

pub use types::{CallError, CancelStyle, ClientConfig, ClientStats, MCP_CANCEL_METHOD, Notification, RequestOptions};

type Reply = Result<Box<RawValue>, CallError>;
type NotificationHandler = Box<dyn Fn(Notification) + Send + Sync>;
/// Where notifications about one call go (see [`Client::call_raw_notified`]).
type CallNotifications = Arc<dyn Fn(Notification) + Send + Sync>;

/// A handle to one connection; clones share it. The connection closes when
/// the last clone is dropped.
#[derive(Clone)]
pub struct Client {
    shared: Arc<Open>,
}

/// What every clone of a [`Client`] holds; when the last is dropped, the
/// outbox closes and the peer's input ends once what is queued is written.
/// The reader and writer tasks hold the [`Shared`] inside, not this.
struct Open(Arc<Shared>);

impl std::ops::Deref for Open {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.outbox.close();
    }
}

/// What the callers and the reader task share.
struct Shared {
    config: ClientConfig,
    next_id: AtomicU64,
    waiters: Mutex<Waiters>,
    counters: Counters,
    buffers: BufferPool,
    outbox: Outbox,
    gone: CancellationToken,
    on_notification: Option<NotificationHandler>,
}

#[derive(Default)]
struct Waiters {
    by_id: HashMap<u64, oneshot::Sender<Reply>>,
    /// The calls whose caller wants the notifications that name them.
    notified: HashMap<u64, CallNotifications>,
    /// Calls given up on (timed out or dropped) whose reply has not come yet:
    /// work the peer may still be doing, whatever `$/cancelRequest` asked.
    /// Capped at [`MAX_ABANDONED`]; past it, no more are remembered.
    abandoned: HashSet<u64>,
    /// Set once by the reader at end of input; no waiter is added after it.
    closed: bool,
}

/// How many given-up calls a client remembers until their late replies come.
const MAX_ABANDONED: usize = 1024;

#[derive(Default)]
struct Counters {
    calls: AtomicU64,
    rpc_errors: AtomicU64,
    timeouts: AtomicU64,
    disconnects: AtomicU64,
    cancelled: AtomicU64,
    late_replies: AtomicU64,
    unknown_ids: AtomicU64,
    noise: AtomicU64,
    notifications: AtomicU64,
}

/// Builds a [`Client`]; the notification handler is optional.
pub struct ClientBuilder {
    config: ClientConfig,
    on_notification: Option<NotificationHandler>,
}

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBuilder").field("config", &self.config).finish_non_exhaustive()
    }
}

impl ClientBuilder {
    /// Calls `handler` on the reader task for every notification from the
    /// peer; it must not block.
    pub fn on_notification(mut self, handler: impl Fn(Notification) + Send + Sync + 'static) -> Self {
        self.on_notification = Some(Box::new(handler));
        self
    }

    /// Starts the reader and writer tasks on the current tokio runtime.
    pub fn connect<R, W>(self, reader: R, writer: W) -> Client
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let gone = CancellationToken::new();
        let shared = Arc::new(Shared {
            next_id: AtomicU64::new(1),
            waiters: Mutex::default(),
            counters: Counters::default(),
            buffers: BufferPool::default(),
            outbox: Outbox::new(writer, self.config.outbound_capacity, gone.clone()),
            gone,
            on_notification: self.on_notification,
            config: self.config,
        });
        let frames_in = FrameReader::new(reader, Some(shared.config.framing), shared.config.max_frame);
        tokio::spawn(read_loop(Arc::clone(&shared), frames_in));
        // Once the connection is gone or the last handle dropped, the writer
        // closes the peer's input, which tells a well-behaved agent to exit.
        let writing = Arc::clone(&shared);
        tokio::spawn(async move {
            if let Err(e) = writing.outbox.run().await {
                tracing::debug!(%e, "write to peer failed");
            }
        });
        Client { shared: Arc::new(Open(shared)) }
    }
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client").field("stats", &self.stats()).finish_non_exhaustive()
    }
}

impl Client {
    /// A builder with the given configuration.
    pub fn builder(config: ClientConfig) -> ClientBuilder {
        ClientBuilder { config, on_notification: None }
    }

    /// A client with the given configuration and no notification handler.
    pub fn connect<R, W>(reader: R, writer: W, config: ClientConfig) -> Client
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        Client::builder(config).connect(reader, writer)
    }

    /// Calls `method` with serializable params and decodes the result.
    pub async fn call<P: Serialize, T: DeserializeOwned>(&self, method: &str, params: P) -> Result<T, CallError> {
        let params = serde_json::value::to_raw_value(&params).map_err(|e| CallError::Encode(Arc::new(e)))?;
        let result = self.call_raw(method, Some(&params), RequestOptions::default()).await?;
        serde_json::from_str(result.get()).map_err(|e| CallError::Decode(Arc::new(e)))
    }

    /// Calls `method` with raw params; the result is returned undecoded.
    pub async fn call_raw(&self, method: &str, params: Option<&RawValue>, options: RequestOptions) -> Reply {
        self.call_inner(method, params, options, None).await
    }

    /// As [`Client::call_raw`], and every notification from the peer whose
    /// params name this call (`"id"`, as `$/progress` does) goes to
    /// `on_notification` while the call is in flight, on the reader task (it
    /// must not block), before the reply. Other notifications go to the
    /// client's own handler.
    pub async fn call_raw_notified(
        &self,
        method: &str,
        params: Option<&RawValue>,
        options: RequestOptions,
        on_notification: impl Fn(Notification) + Send + Sync + 'static,
    ) -> Reply {
        self.call_inner(method, params, options, Some(Arc::new(on_notification))).await
    }

    async fn call_inner(
        &self,
        method: &str,
        params: Option<&RawValue>,
        options: RequestOptions,
        notified: Option<CallNotifications>,
    ) -> Reply {
        let shared = &*self.shared;
        let id = shared.next_id.fetch_add(1, Relaxed);
        let mut frame = shared.buffers.take();
        encode(shared.config.framing, &mut frame, |out| message::write_request(out, Some(id), method, params));
        let (tx, rx) = oneshot::channel();
        // Alone in flight, the caller writes its frame itself; with others
        // in flight, the writer task coalesces their frames into one write.
        let alone = {
            let mut waiters = shared.lock_waiters();
            if waiters.closed {
                shared.counters.disconnects.fetch_add(1, Relaxed);
                return Err(CallError::Disconnected);
            }
            waiters.by_id.insert(id, tx);
            if let Some(notified) = notified {
                waiters.notified.insert(id, notified);
            }
            waiters.by_id.len() == 1
        };
        shared.counters.calls.fetch_add(1, Relaxed);
        // From here on, leaving early (timeout, or the caller dropping this
        // future) must release the waiter and cancel the call on the wire.
        let mut guard = Pending { client: self, id, done: false };
        let deadline = options.timeout.unwrap_or(shared.config.timeout);
        let outcome = tokio::time::timeout(deadline, async {
            shared.outbox.send(frame, alone).await.map_err(|_| CallError::Disconnected)?;
            rx.await.map_err(|_| CallError::Disconnected)?
        })
        .await;
        let reply = match outcome {
            Ok(reply) => {
                guard.done = true;
                reply
            }
            Err(_) => {
                shared.counters.timeouts.fetch_add(1, Relaxed);
                Err(CallError::Elapsed(deadline))
            }
        };
        match &reply {
            Err(CallError::Rpc(_)) => shared.counters.rpc_errors.fetch_add(1, Relaxed),
            Err(CallError::Disconnected) => shared.counters.disconnects.fetch_add(1, Relaxed),
            _ => 0,
        };
        reply
    }

    /// Sends a notification (no reply is expected).
    pub async fn notify(&self, method: &str, params: Option<&RawValue>) -> Result<(), CallError> {
        let mut frame = self.shared.buffers.take();
        encode(self.shared.config.framing, &mut frame, |out| message::write_request(out, None, method, params));
        self.shared.outbox.send(frame, true).await.map_err(|_| CallError::Disconnected)
    }

    /// Ends the connection now: waiting calls fail with `Disconnected`, new
    /// calls fail at once, and the peer's input is closed.
    pub fn close(&self) {
        self.shared.close();
    }

    /// Whether the peer is still connected.
    pub fn is_connected(&self) -> bool {
        !self.shared.gone.is_cancelled()
    }

    /// Resolves when the peer has disconnected (end of its output or a write failure).
    pub async fn disconnected(&self) {
        self.shared.gone.cancelled().await;
    }

    /// Calls waiting for a reply right now.
    pub fn in_flight(&self) -> usize {
        self.shared.lock_waiters().by_id.len()
    }

    /// Calls given up on (timed out or dropped) whose reply has not come yet:
    /// a peer that ignores cancellation is still working on them.
    pub fn abandoned(&self) -> usize {
        self.shared.lock_waiters().abandoned.len()
    }

    /// Lines from the peer that were not JSON-RPC messages, so far (one
    /// counter of [`Client::stats`], read alone on a pool's hot path).
    pub fn noise(&self) -> u64 {
        self.shared.counters.noise.load(Relaxed)
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> ClientStats {
        let c = &self.shared.counters;
        ClientStats {
            calls: c.calls.load(Relaxed),
            rpc_errors: c.rpc_errors.load(Relaxed),
            timeouts: c.timeouts.load(Relaxed),
            disconnects: c.disconnects.load(Relaxed),
            cancelled: c.cancelled.load(Relaxed),
            late_replies: c.late_replies.load(Relaxed),
            unknown_ids: c.unknown_ids.load(Relaxed),
            noise: c.noise.load(Relaxed),
            notifications: c.notifications.load(Relaxed),
        }
    }
}

/// Releases a call's waiter when the call ends without its reply.
struct Pending<'c> {
    client: &'c Client,
    id: u64,
    done: bool,
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let shared = &self.client.shared;
        {
            let mut waiters = shared.lock_waiters();
            waiters.notified.remove(&self.id);
            if waiters.by_id.remove(&self.id).is_none() {
                return; // answered or failed in the meantime: nothing to cancel
            }
            if waiters.abandoned.len() < MAX_ABANDONED {
                waiters.abandoned.insert(self.id);
            }
        }
        shared.counters.cancelled.fetch_add(1, Relaxed);
        let mut frame = shared.buffers.take();
        let (method, params) = match shared.config.cancel {
            CancelStyle::Lsp => (CANCEL_METHOD, format!("{{\"id\":{}}}", self.id)),
            CancelStyle::Mcp => {
                (MCP_CANCEL_METHOD, format!("{{\"requestId\":{},\"reason\":\"the caller gave up\"}}", self.id))
            }
        };
        let params = RawValue::from_string(params).expect("a cancel object is JSON");
        encode(shared.config.framing, &mut frame, |out| message::write_request(out, None, method, Some(&params)));
        // Best effort: a full queue means the peer is not reading anyway.
        let _ = shared.outbox.try_send(frame, true);
    }
}

impl Shared {
    fn lock_waiters(&self) -> std::sync::MutexGuard<'_, Waiters> {
        self.waiters.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn on_frame(&self, bytes: &[u8]) {
        let incoming = match message::parse(bytes) {
            Ok(Payload::Single(incoming)) => incoming,
            Ok(Payload::Batch(_)) | Err(_) => return self.noise(bytes, "not a single JSON-RPC message"),
        };
        match incoming {
            Incoming::Response { id, outcome } => {
                let number = id.get().parse::<u64>().ok();
                let waiter = number.and_then(|id| {
                    let mut waiters = self.lock_waiters();
                    waiters.notified.remove(&id);
                    let waiter = waiters.by_id.remove(&id);
                    if waiter.is_none() {
                        // The peer finished a call its caller gave up on.
                        waiters.abandoned.remove(&id);
                    }
                    waiter
                });
                let Some(waiter) = waiter else {
                    return self.unexpected_reply(id.get());
                };
                let reply = match outcome {
                    Ok(result) => Ok(result.to_owned()),
                    Err(error) => Err(CallError::Rpc(message::decode_error(error))),
                };
                let _ = waiter.send(reply);
            }
            Incoming::Notification { method, params } => {
                self.counters.notifications.fetch_add(1, Relaxed);
                let notification = Notification { method: method.into_owned(), params: params.map(ToOwned::to_owned) };
                if let Some(call) = self.notified_call(&notification) {
                    call(notification);
                } else if let Some(handler) = &self.on_notification {
                    handler(notification);
                }
            }
            Incoming::Request { id, method, .. } => {
                tracing::debug!(%method, "peer sent a request; this client serves none");
                let err = ErrorObjectOwned::owned(
                    code::METHOD_NOT_FOUND,
                    "method not found: this client serves no methods",
                    None::<()>,
                );
                // Refused once the last client handle is gone.
                let mut frame = self.buffers.take();
                encode(self.config.framing, &mut frame, |buf| message::write_error(buf, Some(id.get()), &err));
                let _ = self.outbox.try_send(frame, true);
            }
            Incoming::Invalid { reason, .. } => self.noise(bytes, reason),
        }
    }

    /// The handler of the call in flight that a notification names, if any.
    fn notified_call(&self, notification: &Notification) -> Option<CallNotifications> {
        #[derive(serde::Deserialize)]
        struct Named {
            id: u64,
        }
        let named: Named = serde_json::from_str(notification.params.as_deref()?.get()).ok()?;
        self.lock_waiters().notified.get(&named.id).cloned()
    }

    fn unexpected_reply(&self, id: &str) {
        let issued = id.parse::<u64>().is_ok_and(|id| id > 0 && id < self.next_id.load(Relaxed));
        if issued {
            self.counters.late_replies.fetch_add(1, Relaxed);
            tracing::debug!(id, "late or duplicate reply dropped");
        } else {
            self.counters.unknown_ids.fetch_add(1, Relaxed);
            tracing::warn!(id, "reply with an id never issued dropped");
        }
    }

    fn noise(&self, bytes: &[u8], reason: &str) {
        self.counters.noise.fetch_add(1, Relaxed);
        let shown = &bytes[..bytes.len().min(200)];
        tracing::warn!(reason, bytes = %shown.escape_ascii(), len = bytes.len(), "protocol noise from peer");
    }

    /// End of input: no new waiters, and every waiting call fails now.
    fn close(&self) {
        let waiting = {
            let mut waiters = self.lock_waiters();
            waiters.closed = true;
            waiters.abandoned.clear();
            waiters.notified.clear();
            std::mem::take(&mut waiters.by_id)
        };
        for (_, waiter) in waiting {
            let _ = waiter.send(Err(CallError::Disconnected));
        }
        self.gone.cancel();
    }
}

async fn read_loop<R: AsyncRead + Unpin>(shared: Arc<Shared>, mut frames: FrameReader<R>) {
    loop {
        match frames.next().await {
            Ok(Some(Frame::Message(bytes))) => shared.on_frame(&bytes),
            Ok(Some(Frame::Oversize { limit, declared })) => {
                shared.counters.noise.fetch_add(1, Relaxed);
                tracing::warn!(limit, declared, "oversized frame from peer skipped");
            }
            Ok(Some(Frame::Malformed(reason))) => shared.noise(reason.as_bytes(), "malformed frame header"),
            Ok(None) => break,
            Err(e) => {
                tracing::debug!(%e, "read from peer failed");
                break;
            }
        }
    }
    shared.close();
}

/// Writes one message with `write` and frames it in place.
fn encode(framing: Framing, frame: &mut Vec<u8>, write: impl FnOnce(&mut Vec<u8>)) {
    write(frame);
    frame_in_place(framing, frame);
}
