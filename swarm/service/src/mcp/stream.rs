//! MCP sessions over the daemon's second Unix socket, the one `skep mcp`
//! relays stdio to: each connection (our own uid only, as on the control
//! socket) is one MCP session, newline-delimited JSON-RPC as on MCP's stdio,
//! served by rmcp. A connection that closes ends its session and cancels its
//! calls.

use std::sync::Arc;

use tokio::net::UnixListener;
use tokio_util::sync::CancellationToken;

use super::handler::{Session, Shared};
use crate::observe_dir::uid;
use crate::socket::{Presence, admit};

/// Serves sessions until `stop`, then waits for every session to end.
pub(crate) async fn accept_sessions(
    listener: UnixListener,
    shared: Arc<Shared>,
    stop: CancellationToken,
    sessions: Presence,
) {
    let me = uid();
    let mut running = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    if let Err(refusal) = admit(stream.peer_cred().map(|cred| cred.uid()), me) {
                        tracing::warn!("refused an MCP session: {refusal}");
                        continue;
                    }
                    let session = Session::new(Arc::clone(&shared));
                    let (entered, stop) = (sessions.enter(), stop.child_token());
                    running.spawn(async move {
                        let _entered = entered;
                        let (reader, writer) = stream.into_split();
                        match rmcp::service::serve_server_with_ct(session, (reader, writer), stop).await {
                            Ok(service) => {
                                let _ = service.waiting().await;
                            }
                            Err(e) => tracing::debug!(%e, "an MCP session ended before it started"),
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(%e, "cannot accept an MCP session");
                    // Out of descriptors persists for a while: do not spin on it.
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            },
            Some(_) = running.join_next(), if !running.is_empty() => {}
            () = stop.cancelled() => break,
        }
    }
    drop(listener);
    while running.join_next().await.is_some() {}
}
