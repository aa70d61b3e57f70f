//! Serving a jsonrpsee [`Methods`] table over any byte stream.
//!
//! jsonrpsee has no public way to serve over an arbitrary reader and writer,
//! so the bridge owns the connection and hands each request to
//! [`Methods::raw_json_request`] (a single request to a synchronous or async
//! method skips it: its callback is called with what the bridge's own parse
//! found, so the hot path parses each frame once). Around it the bridge adds
//! what that entry point lacks: framing, notifications, batches,
//! `$/cancelRequest`, a bound on in-flight handlers, panics as -32603, and a
//! graceful end on EOF.
//!
//! One task owns the connection state: it reads frames, spawns one handler
//! task per request into a `JoinSet`, and keeps the map from request id to
//! handler. Handlers send their own responses to the writer task, so a slow
//! handler never blocks the reader; the reader only answers for a handler that
//! did not finish (cancelled, panicked, or cut off at shutdown).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::FutureExt as _;
use futures::future::BoxFuture;
use jsonrpsee::types::ErrorObjectOwned;
use jsonrpsee::types::{Id, Params};
use jsonrpsee::{ConnectionId, Extensions, MethodCallback, MethodResponse, Methods, SyncMethod};
use serde_json::value::RawValue;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio::task::{AbortHandle, JoinError, JoinSet};
use tokio_util::sync::CancellationToken;

use crate::caller::Caller;
use crate::code;
use crate::framing::{DEFAULT_MAX_FRAME, Frame, FrameReader, Framing, encode_frame};
use crate::message::{self, Incoming, Payload};
use crate::stand_in;
use crate::writer::write_loop;

/// The method that cancels an in-flight request (LSP's name for it).
pub const CANCEL_METHOD: &str = "$/cancelRequest";

/// Limits and framing of one served connection.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Forced framing; `None` detects it from the first bytes.
    pub framing: Option<Framing>,
    /// Largest frame read; a larger one is answered with -32600 and skipped.
    pub max_frame: usize,
    /// Most entries in one batch.
    pub max_batch: usize,
    /// Most handlers running at once; further requests get -32004.
    pub max_in_flight: usize,
    /// How long in-flight handlers may finish after input ends.
    pub shutdown_grace: Duration,
    /// Frames queued for the writer before handlers wait.
    pub outbound_capacity: usize,
    /// Notifications buffered per subscription.
    pub subscription_buffer: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            framing: None,
            max_frame: DEFAULT_MAX_FRAME,
            max_batch: 1_000,
            max_in_flight: 16_384,
            shutdown_grace: Duration::from_secs(5),
            outbound_capacity: 1_024,
            subscription_buffer: 1_024,
        }
    }
}

/// What one connection saw, returned when it ends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServeSummary {
    /// Requests and notifications dispatched to handlers (batch entries included).
    pub dispatched: u64,
    /// Frames answered with a spec error by the bridge itself.
    pub rejected: u64,
    /// Requests cancelled by `$/cancelRequest`.
    pub cancelled: u64,
    /// Requests cut off at shutdown with -32005.
    pub cut_off: u64,
}

/// A method table and the limits to serve it with.
#[derive(Debug, Clone)]
pub struct Server {
    methods: Methods,
    config: ServerConfig,
}

impl Server {
    /// A server for `methods` (an `RpcModule` or merged `Methods`).
    pub fn new(methods: impl Into<Methods>, config: ServerConfig) -> Self {
        Server { methods: methods.into(), config }
    }

    /// Serves one connection until input ends or `shutdown` fires, lets
    /// in-flight handlers finish within the grace period, flushes, and returns.
    pub async fn serve<R, W>(&self, reader: R, writer: W, shutdown: CancellationToken) -> std::io::Result<ServeSummary>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let (out, frames) = mpsc::channel::<Vec<u8>>(self.config.outbound_capacity);
        // The writer stops when every sender is gone: all answers are flushed first.
        let writer = tokio::spawn(write_loop(writer, frames, CancellationToken::new()));
        let mut conn = Connection {
            server: self,
            reader: FrameReader::new(reader, self.config.framing, self.config.max_frame),
            out,
            handlers: JoinSet::new(),
            by_request: HashMap::new(),
            by_task: HashMap::new(),
            subscriptions: JoinSet::new(),
            summary: ServeSummary::default(),
        };
        let read_result = conn.run(&shutdown).await;
        conn.drain().await;
        conn.subscriptions.shutdown().await;
        let summary = conn.summary;
        drop(conn);
        let write_result = writer.await.unwrap_or_else(|e| Err(std::io::Error::other(e)));
        read_result.and(write_result).map(|()| summary)
    }
}

/// What a handler task leaves behind when it ends.
enum Finished {
    Done,
    /// A subscription was opened: its notifications still have to be forwarded.
    Subscribed(mpsc::Receiver<Box<RawValue>>),
}

struct Connection<'s, R> {
    server: &'s Server,
    reader: FrameReader<R>,
    out: mpsc::Sender<Vec<u8>>,
    handlers: JoinSet<Finished>,
    /// Raw request id → its handler, for cancellation and duplicate detection.
    by_request: HashMap<Box<str>, AbortHandle>,
    by_task: HashMap<tokio::task::Id, Box<str>>,
    subscriptions: JoinSet<()>,
    summary: ServeSummary,
}

impl<R: AsyncRead + Unpin> Connection<'_, R> {
    async fn run(&mut self, shutdown: &CancellationToken) -> std::io::Result<()> {
        loop {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => return Ok(()),
                Some(joined) = self.handlers.join_next_with_id(), if !self.handlers.is_empty() => {
                    self.finish(joined, code::REQUEST_CANCELLED).await;
                }
                frame = self.reader.next() => match frame? {
                    None => return Ok(()),
                    Some(Frame::Message(bytes)) => self.on_message(bytes).await,
                    Some(Frame::Oversize { limit, declared }) => {
                        let size = declared.map_or_else(|| "more than".to_owned(), |n| n.to_string());
                        let err = ErrorObjectOwned::owned(
                            code::INVALID_REQUEST,
                            format!("frame too large: {size} bytes, the limit is {limit}; it was skipped"),
                            Some(serde_json::json!({ "limit": limit })),
                        );
                        self.reject(None, &err).await;
                    }
                    Some(Frame::Malformed(reason)) => {
                        let err = ErrorObjectOwned::owned(
                            code::PARSE_ERROR,
                            format!("parse error: malformed frame header: {reason}"),
                            None::<()>,
                        );
                        self.reject(None, &err).await;
                    }
                },
            }
        }
    }

    async fn on_message(&mut self, frame: Bytes) {
        let payload = match message::parse(&frame) {
            Ok(payload) => payload,
            Err(e) => return self.reject(None, &e.to_error_object()).await,
        };
        let incoming = match payload {
            Payload::Batch(entries) => return self.on_batch(entries.len(), frame.clone()).await,
            Payload::Single(incoming) => incoming,
        };
        match incoming {
            Incoming::Request { id, method, params } => {
                if self.by_request.contains_key(id.get()) {
                    let err = invalid_request("request id is already in flight on this connection");
                    return self.reject(Some(id.get()), &err).await;
                }
                let (request_id, stand_in) = stand_in::dispatch_id(id);
                // A synchronous method cannot be cancelled and finishes at once:
                // answer it here, saving a task and two more parses per call.
                if let Some(MethodCallback::Sync(callback)) = self.server.methods.method(&method) {
                    let callback = Arc::clone(callback);
                    self.summary.dispatched += 1;
                    let response = call_sync(&callback, request_id, id, params);
                    let response = if stand_in { stand_in::restore(response, id) } else { response };
                    return self.send(response.get().as_bytes()).await;
                }
                let key: Box<str> = id.get().into();
                if self.handlers.len() >= self.server.config.max_in_flight {
                    return self.reject(Some(&key), &overloaded(self.server.config.max_in_flight)).await;
                }
                self.summary.dispatched += 1;
                let caller = Caller::new(id.to_owned(), self.framing(), self.out.clone());
                let handle = match self.server.methods.method(&method) {
                    // The hot path (`swarm/call` is async): the method's future
                    // is made from what `parse` already found, so jsonrpsee does
                    // not parse the frame a second time (its untagged `Id`
                    // formats a discarded error per request) nor make a
                    // subscription channel per call.
                    Some(MethodCallback::Async(callback)) => {
                        let params = Params::new(params.map(RawValue::get)).into_owned();
                        let call =
                            callback(request_id.into_owned(), params, ConnectionId(0), usize::MAX, Extensions::new());
                        let own_id = stand_in.then(|| id.to_owned());
                        self.handlers.spawn(handle_async(call, own_id, caller))
                    }
                    _ => {
                        let rewritten = stand_in::rewrite(id, &method, params).map(|request| (request, id.to_owned()));
                        self.handlers.spawn(handle_request(self.server.clone(), frame, rewritten, caller))
                    }
                };
                self.by_task.insert(handle.id(), key.clone());
                self.by_request.insert(key, handle);
            }
            Incoming::Notification { method, params } if method == CANCEL_METHOD => self.cancel(params),
            Incoming::Notification { method, params } => {
                if self.handlers.len() >= self.server.config.max_in_flight {
                    tracing::warn!(%method, "notification dropped: too many handlers in flight");
                    return;
                }
                self.summary.dispatched += 1;
                let request = notification_as_request(&method, params);
                let methods = self.server.methods.clone();
                let buffer = self.server.config.subscription_buffer;
                self.handlers.spawn(async move {
                    if let Err(e) = methods.raw_json_request(&request, buffer).await {
                        tracing::debug!(%e, "notification not dispatched");
                    }
                    Finished::Done
                });
            }
            Incoming::Response { id, .. } => {
                tracing::debug!(id = id.get(), "response ignored: this server sends no requests");
            }
            Incoming::Invalid { id, reason } => {
                self.reject(id.map(RawValue::get), &invalid_request(reason)).await;
            }
        }
    }

    async fn on_batch(&mut self, len: usize, frame: Bytes) {
        let config = &self.server.config;
        if len == 0 {
            return self.reject(None, &invalid_request("empty batch")).await;
        }
        if len > config.max_batch {
            let reason = format!("batch of {len} entries exceeds the limit of {}", config.max_batch);
            return self.reject(None, &invalid_request(&reason)).await;
        }
        if self.handlers.len() >= config.max_in_flight {
            return self.reject(None, &overloaded(config.max_in_flight)).await;
        }
        self.summary.dispatched += len as u64;
        let task = handle_batch(self.server.clone(), frame, self.framing(), self.out.clone());
        self.handlers.spawn(task);
    }

    /// `$/cancelRequest {id}`: aborts the handler; `finish` answers -32800.
    fn cancel(&mut self, params: Option<&RawValue>) {
        #[derive(serde::Deserialize)]
        struct CancelParams<'a> {
            #[serde(borrow)]
            id: &'a RawValue,
        }
        let Some(CancelParams { id }) = params.and_then(|p| serde_json::from_str(p.get()).ok()) else {
            tracing::debug!("$/cancelRequest without a usable id ignored");
            return;
        };
        if let Some(handle) = self.by_request.get(id.get()) {
            handle.abort();
        }
    }

    /// Books a handler's end; answers for it when it did not answer itself.
    async fn finish(&mut self, joined: Result<(tokio::task::Id, Finished), JoinError>, abort_code: i32) {
        let task = match &joined {
            Ok((task, _)) => *task,
            Err(e) => e.id(),
        };
        let key = self.by_task.remove(&task);
        if let Some(key) = &key {
            self.by_request.remove(key);
        }
        let err = match joined {
            Ok((_, Finished::Done)) => return,
            Ok((_, Finished::Subscribed(notifications))) => {
                self.subscriptions.spawn(forward(notifications, self.framing(), self.out.clone()));
                return;
            }
            Err(e) if e.is_panic() => {
                tracing::error!(id = key.as_deref(), "handler panicked");
                ErrorObjectOwned::owned(code::INTERNAL_ERROR, "internal error: the handler panicked", None::<()>)
            }
            Err(_) if abort_code == code::REQUEST_CANCELLED => {
                self.summary.cancelled += 1;
                ErrorObjectOwned::owned(code::REQUEST_CANCELLED, "request cancelled", None::<()>)
            }
            Err(_) => {
                self.summary.cut_off += 1;
                ErrorObjectOwned::owned(
                    code::SHUTTING_DOWN,
                    "shutting down: the request did not finish within the grace period",
                    None::<()>,
                )
            }
        };
        // A notification or batch has no single id to answer.
        if let Some(key) = key {
            self.send(message::error_response(Some(&key), &err).as_bytes()).await;
        }
    }

    /// After input ends: handlers get the grace period, then are cut off.
    async fn drain(&mut self) {
        let grace = tokio::time::sleep(self.server.config.shutdown_grace);
        tokio::pin!(grace);
        loop {
            tokio::select! {
                joined = self.handlers.join_next_with_id() => match joined {
                    Some(joined) => self.finish(joined, code::REQUEST_CANCELLED).await,
                    None => return,
                },
                () = &mut grace => break,
            }
        }
        tracing::warn!(handlers = self.handlers.len(), "grace period over: cutting off handlers");
        self.handlers.abort_all();
        while let Some(joined) = self.handlers.join_next_with_id().await {
            self.finish(joined, code::SHUTTING_DOWN).await;
        }
    }

    async fn reject(&mut self, id: Option<&str>, err: &ErrorObjectOwned) {
        self.summary.rejected += 1;
        tracing::debug!(code = err.code(), message = err.message(), "rejected");
        self.send(message::error_response(id, err).as_bytes()).await;
    }

    /// Queues one payload for the writer. The future borrows nothing from
    /// the connection, so serving needs a `Send` reader, not a `Sync` one
    /// (`protocol_stdio`'s reader is not `Sync`).
    fn send(&self, payload: &[u8]) -> impl Future<Output = ()> + Send + 'static {
        let (out, frame) = (self.out.clone(), framed(self.framing(), payload));
        async move {
            let _ = out.send(frame).await;
        }
    }

    fn framing(&self) -> Framing {
        self.reader.framing().unwrap_or(Framing::Newline)
    }
}

/// Runs one request; `rewritten` is the request under a stand-in id, with the
/// caller's own id to put back (`stand_in.rs`).
async fn handle_request(
    server: Server,
    frame: Bytes,
    rewritten: Option<(String, Box<RawValue>)>,
    caller: Caller,
) -> Finished {
    let (framing, out) = (caller.framing(), caller.out());
    let (response, notifications) = match &rewritten {
        None => caller.scope(dispatch(&server, std::str::from_utf8(&frame).expect("parse() checked UTF-8"))).await,
        Some((request, id)) => {
            let (response, notifications) = caller.scope(dispatch(&server, request)).await;
            (stand_in::restore(response, id), notifications)
        }
    };
    let _ = out.send(framed(framing, response.get().as_bytes())).await;
    notifications.map_or(Finished::Done, Finished::Subscribed)
}

/// Runs an async method's future, made in `on_message`; `own_id` is the
/// caller's id to put back when it was dispatched under the stand-in.
async fn handle_async(
    call: BoxFuture<'static, MethodResponse>,
    own_id: Option<Box<RawValue>>,
    caller: Caller,
) -> Finished {
    let (framing, out) = (caller.framing(), caller.out());
    let response = caller.scope(call).await.into_parts().0;
    let response = match &own_id {
        Some(id) => stand_in::restore(response, id),
        None => response,
    };
    let _ = out.send(framed(framing, response.get().as_bytes())).await;
    Finished::Done
}

async fn handle_batch(server: Server, frame: Bytes, framing: Framing, out: mpsc::Sender<Vec<u8>>) -> Finished {
    let Ok(Payload::Batch(entries)) = message::parse(&frame) else {
        unreachable!("on_message saw this frame parse as a batch")
    };
    let answers = futures::future::join_all(entries.into_iter().map(|entry| {
        let server = &server;
        async move {
            let (request, answers, own_id) = match message::classify(entry) {
                Incoming::Request { id, method, params } => match stand_in::rewrite(id, &method, params) {
                    Some(request) => (request, true, Some(id)),
                    None => (entry.get().to_owned(), true, None),
                },
                Incoming::Notification { method, params } => (notification_as_request(&method, params), false, None),
                Incoming::Invalid { id, reason } => {
                    let err = invalid_request(reason);
                    return Some(message::error_response(id.map(RawValue::get), &err));
                }
                Incoming::Response { .. } => return None,
            };
            let outcome = std::panic::AssertUnwindSafe(dispatch(server, &request)).catch_unwind().await;
            match outcome {
                // Subscriptions opened inside a batch are not forwarded: batch
                // entries have no lasting task to own them.
                Ok((response, _)) => {
                    let response = match own_id {
                        Some(id) => stand_in::restore(response, id),
                        None => response,
                    };
                    answers.then(|| String::from(Box::<str>::from(response)))
                }
                Err(_) => {
                    let id = match message::classify(entry) {
                        Incoming::Request { id, .. } => Some(id.get().to_owned()),
                        _ => None,
                    };
                    let err = ErrorObjectOwned::owned(
                        code::INTERNAL_ERROR,
                        "internal error: the handler panicked",
                        None::<()>,
                    );
                    id.map(|id| message::error_response(Some(&id), &err))
                }
            }
        }
    }))
    .await;
    let answers: Vec<String> = answers.into_iter().flatten().collect();
    if !answers.is_empty() {
        let _ = out.send(framed(framing, format!("[{}]", answers.join(",")).as_bytes())).await;
    }
    Finished::Done
}

/// Calls a synchronous jsonrpsee method directly, as `raw_json_request` would
/// but on an already classified request; a panic is a -32603 answer.
fn call_sync(callback: &SyncMethod, request_id: Id<'_>, id: &RawValue, params: Option<&RawValue>) -> Box<RawValue> {
    let params = Params::new(params.map(RawValue::get));
    let answered = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        callback(request_id, params, usize::MAX, Extensions::new()).into_parts().0
    }));
    answered.unwrap_or_else(|_| {
        tracing::error!(id = id.get(), "handler panicked");
        let err = ErrorObjectOwned::owned(code::INTERNAL_ERROR, "internal error: the handler panicked", None::<()>);
        RawValue::from_string(message::error_response(Some(id.get()), &err)).expect("error_response writes JSON")
    })
}

/// Runs one request through jsonrpsee; the receiver is returned only when a
/// subscription is still open on it.
async fn dispatch(server: &Server, request: &str) -> (Box<RawValue>, Option<mpsc::Receiver<Box<RawValue>>>) {
    match server.methods.raw_json_request(request, server.config.subscription_buffer).await {
        Ok((response, notifications)) => {
            let open = !(notifications.is_closed() && notifications.is_empty());
            (response, open.then_some(notifications))
        }
        // Unreachable in practice: the frame was classified as a request first.
        Err(e) => {
            let err = ErrorObjectOwned::owned(code::INVALID_REQUEST, format!("invalid request: {e}"), None::<()>);
            let text = message::error_response(None, &err);
            (RawValue::from_string(text).expect("error_response writes JSON"), None)
        }
    }
}

async fn forward(mut notifications: mpsc::Receiver<Box<RawValue>>, framing: Framing, out: mpsc::Sender<Vec<u8>>) {
    while let Some(notification) = notifications.recv().await {
        if out.send(framed(framing, notification.get().as_bytes())).await.is_err() {
            return;
        }
    }
}

/// jsonrpsee only dispatches messages with an id, so a notification is given
/// one; its response is discarded.
fn notification_as_request(method: &str, params: Option<&RawValue>) -> String {
    let mut request = Vec::with_capacity(64 + method.len() + params.map_or(0, |p| p.get().len()));
    message::write_request(&mut request, Some(0), method, params);
    String::from_utf8(request).expect("write_request writes UTF-8")
}

fn framed(framing: Framing, payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(payload.len() + 32);
    encode_frame(framing, payload, &mut frame);
    frame
}

fn invalid_request(reason: &str) -> ErrorObjectOwned {
    ErrorObjectOwned::owned(code::INVALID_REQUEST, format!("invalid request: {reason}"), None::<()>)
}

fn overloaded(limit: usize) -> ErrorObjectOwned {
    ErrorObjectOwned::owned(
        code::OVERLOADED,
        format!("overloaded: {limit} requests already in flight; retry later"),
        Some(serde_json::json!({ "maxInFlight": limit })),
    )
}

/// Compile-time check: serving `protocol_stdio()` can be spawned on a
/// multi-thread runtime.
#[cfg(test)]
#[allow(dead_code)]
fn serving_protocol_stdio_is_send(
    server: &Server,
    input: crate::stdio::ProtocolReader,
    output: crate::stdio::ProtocolWriter,
) -> impl Send + '_ {
    server.serve(input, output, CancellationToken::new())
}
