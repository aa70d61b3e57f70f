//! What a client is configured with, and what its calls and counters report.

use std::sync::Arc;
use std::time::Duration;

use jsonrpsee::types::ErrorObjectOwned;
use serde::Serialize;
use serde_json::value::RawValue;

use crate::code;
use crate::framing::{DEFAULT_MAX_FRAME, Framing};

/// MCP's cancellation notification.
pub const MCP_CANCEL_METHOD: &str = "notifications/cancelled";

/// How a client speaks and how long it waits.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The framing the peer expects (clients are told; they do not detect).
    pub framing: Framing,
    /// Deadline of a call that does not set its own.
    pub timeout: Duration,
    /// Largest reply accepted; a larger one is skipped and counted as noise.
    pub max_frame: usize,
    /// Requests queued for the writer before callers wait.
    pub outbound_capacity: usize,
    /// How an abandoned call is cancelled on the wire.
    pub cancel: CancelStyle,
}

/// The notification that tells a peer to stop working on a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CancelStyle {
    /// `$/cancelRequest {"id": N}`, as LSP and vscode-jsonrpc.
    #[default]
    Lsp,
    /// `notifications/cancelled {"requestId": N, "reason": ...}`, as MCP.
    Mcp,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            framing: Framing::Newline,
            timeout: Duration::from_secs(30),
            max_frame: DEFAULT_MAX_FRAME,
            outbound_capacity: 1_024,
            cancel: CancelStyle::Lsp,
        }
    }
}

/// Choices for one request on the wire.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestOptions {
    /// Overrides the client's default deadline.
    pub timeout: Option<Duration>,
}

/// Why a call did not produce a result.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    /// No reply within the deadline; the peer was told to cancel.
    #[error("no reply within {0:?}")]
    Elapsed(Duration),
    /// The peer closed its output or the connection failed.
    #[error("the peer disconnected")]
    Disconnected,
    /// The peer answered with an error object.
    #[error("the peer answered with error {}: {}", .0.code(), .0.message())]
    Rpc(ErrorObjectOwned),
    /// The params could not be encoded.
    #[error("cannot encode params")]
    Encode(#[source] Arc<serde_json::Error>),
    /// The result did not decode into the expected type.
    #[error("cannot decode the result")]
    Decode(#[source] Arc<serde_json::Error>),
}

impl CallError {
    /// The JSON-RPC code this error is answered with when passed on.
    pub fn code(&self) -> i32 {
        match self {
            CallError::Elapsed(_) => code::TIMEOUT,
            CallError::Disconnected => code::AGENT_CRASHED,
            CallError::Rpc(e) => e.code(),
            CallError::Encode(_) => code::INVALID_PARAMS,
            CallError::Decode(_) => code::INTERNAL_ERROR,
        }
    }

    /// The error object to pass on to whoever asked.
    pub fn to_error_object(&self) -> ErrorObjectOwned {
        match self {
            CallError::Rpc(e) => e.clone(),
            CallError::Elapsed(after) => ErrorObjectOwned::owned(
                code::TIMEOUT,
                format!("timeout: no reply within {} ms", after.as_millis()),
                Some(serde_json::json!({ "timeoutMs": after.as_millis() as u64 })),
            ),
            other => ErrorObjectOwned::owned(other.code(), other.to_string(), None::<()>),
        }
    }
}

/// A notification sent by the peer.
#[derive(Debug, Clone)]
pub struct Notification {
    /// The method name.
    pub method: String,
    /// The params, undecoded.
    pub params: Option<Box<RawValue>>,
}

impl Notification {
    /// What a subscription notification carries: the `result` of its
    /// `{"subscription", "result"}` params; `None` if it has none.
    pub fn subscription_result(&self) -> Option<serde_json::Value> {
        let params = self.params.as_deref()?;
        let mut value: serde_json::Value = serde_json::from_str(params.get()).ok()?;
        Some(value.get_mut("result")?.take())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subscription_notification_yields_its_result() {
        let note = |params: &str| Notification {
            method: "events/event".into(),
            params: Some(RawValue::from_string(params.to_owned()).unwrap()),
        };
        assert_eq!(
            note(r#"{"subscription":1,"result":{"a":[1]}}"#).subscription_result(),
            Some(serde_json::json!({"a":[1]}))
        );
        assert_eq!(note(r#"{"subscription":1}"#).subscription_result(), None);
        assert_eq!(Notification { method: "m".into(), params: None }.subscription_result(), None);
    }
}

/// Counters of one connection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientStats {
    /// Calls sent to the peer.
    pub calls: u64,
    /// Calls answered with an error object.
    pub rpc_errors: u64,
    /// Calls that timed out.
    pub timeouts: u64,
    /// Calls failed because the peer went away.
    pub disconnects: u64,
    /// Calls dropped before their reply (cancelled on the wire).
    pub cancelled: u64,
    /// Replies for calls that had already ended (timed out, cancelled, answered).
    pub late_replies: u64,
    /// Replies with an id this client never issued.
    pub unknown_ids: u64,
    /// Lines that were not JSON-RPC (stray prints), or oversized frames.
    pub noise: u64,
    /// Notifications received.
    pub notifications: u64,
}
