//! The peer a request came from, reachable while its handler runs.
//!
//! jsonrpsee hands a handler its params, not the connection, so a handler
//! could only answer once. The server runs each request's handler with its
//! [`Caller`] in a task-local: a handler (or anything it awaits in the same
//! task) can send that peer notifications about the request, such as the
//! progress an agent reported for it.

use serde_json::value::RawValue;
use tokio::sync::mpsc;

use crate::framing::{Framing, encode_frame};
use crate::message;

tokio::task_local! {
    static CALLER: Caller;
}

/// The peer that made the request being handled.
#[derive(Debug, Clone)]
pub struct Caller {
    id: Box<RawValue>,
    framing: Framing,
    out: mpsc::Sender<Vec<u8>>,
}

impl Caller {
    /// The caller of the request this task is handling, if it is handling one.
    pub fn current() -> Option<Caller> {
        CALLER.try_with(Caller::clone).ok()
    }

    /// The request's id exactly as the caller wrote it.
    pub fn id(&self) -> &RawValue {
        &self.id
    }

    /// Sends the caller a notification; returns false when it was dropped
    /// because the caller is not reading (the queue is full) or has gone.
    /// Never waits: a handler must not stall on a slow reader.
    pub fn notify(&self, method: &str, params: &RawValue) -> bool {
        let mut payload = Vec::with_capacity(64 + method.len() + params.get().len());
        message::write_request(&mut payload, None, method, Some(params));
        let mut frame = Vec::with_capacity(payload.len() + 32);
        encode_frame(self.framing, &payload, &mut frame);
        self.out.try_send(frame).is_ok()
    }

    /// Runs `handler` with this caller reachable through [`Caller::current`].
    pub(crate) async fn scope<F: Future>(self, handler: F) -> F::Output {
        CALLER.scope(self, handler).await
    }

    pub(crate) fn framing(&self) -> Framing {
        self.framing
    }

    pub(crate) fn out(&self) -> mpsc::Sender<Vec<u8>> {
        self.out.clone()
    }

    pub(crate) fn new(id: Box<RawValue>, framing: Framing, out: mpsc::Sender<Vec<u8>>) -> Caller {
        Caller { id, framing, out }
    }
}
