//! MCP sessions over the daemon's second Unix socket, the one `skep mcp`
//! relays stdio to: each connection (our own uid only, as on the control
//! socket) is one MCP session, newline-delimited JSON-RPC as on MCP's stdio,
//! served by rmcp. A connection that closes ends its session and cancels its
//! calls.

use std::sync::Arc;

use tokio::net::UnixListener;
use tokio_util::sync::CancellationToken;

use super::handler::{Session, Shared};
use super::registry::Transport;
use crate::socket::{Presence, accept_each};

/// Serves sessions until `stop`, then waits for every session to end.
pub(crate) async fn accept_sessions(
    listener: UnixListener,
    shared: Arc<Shared>,
    stop: CancellationToken,
    sessions: Presence,
) {
    accept_each(listener, stop, sessions, "MCP session", move |stream, stop| {
        let session = Session::new(Arc::clone(&shared), Transport::Stdio);
        async move {
            let (reader, writer) = stream.into_split();
            match rmcp::service::serve_server_with_ct(session, (reader, writer), stop).await {
                Ok(service) => {
                    let _ = service.waiting().await;
                }
                Err(e) => tracing::debug!(%e, "an MCP session ended before it started"),
            }
        }
    })
    .await;
}
