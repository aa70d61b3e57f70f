//! The Streamable HTTP front: rmcp's `StreamableHttpService` (POST with JSON
//! or SSE answers, GET for the server's stream, DELETE to end a session,
//! `Mcp-Session-Id`, protocol version negotiation, Host and Origin checks,
//! the body limit) mounted at `/mcp` on axum, behind the bearer-token guard,
//! a single response answered as JSON (`json_answer.rs`).
//!
//! Statuses a client can get from us rather than from MCP: 400 (a body that
//! is not JSON, with a JSON-RPC parse error), 401 (token), 403 (foreign Origin
//! or Host), 404 (unknown session id, or a path other than `/mcp`), 413 (body
//! past `max_body`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use skep_swarm::McpConfig;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::guard;
use super::handler::{Session, Shared};
use super::json_answer::json_answer;
use super::registry::Transport;

/// The app served on the HTTP listener.
pub(crate) fn router(
    shared: Arc<Shared>,
    sessions: Arc<LocalSessionManager>,
    config: &McpConfig,
    token: Arc<str>,
    stop: CancellationToken,
) -> Router {
    let mut allowed_hosts = vec!["localhost".to_owned(), "127.0.0.1".to_owned(), "::1".to_owned()];
    if let Some(listen) = config.listen.filter(|addr| !addr.ip().is_unspecified()) {
        allowed_hosts.push(listen.ip().to_string());
    }
    let http = StreamableHttpServerConfig::default()
        .with_allowed_hosts(allowed_hosts)
        .with_allowed_origins(config.allowed_origins.clone())
        // An empty list refuses every Origin a browser sends; clients that are not browsers send none.
        .enforce_origin_validation()
        .with_max_request_body_bytes(config.max_body)
        .with_cancellation_token(stop);
    let service =
        StreamableHttpService::new(move || Ok(Session::new(Arc::clone(&shared), Transport::Http)), sessions, http);
    Router::new()
        .nest_service("/mcp", service)
        .layer(axum::middleware::from_fn(json_answer))
        .layer(axum::middleware::from_fn_with_state(guard::Guard { token, max_body: config.max_body }, guard::guard))
}

/// Binds the HTTP front's address.
pub(crate) async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serves `app` until `stop` is cancelled, counting the connections accepted in `accepted`.
pub(crate) async fn serve(listener: TcpListener, app: Router, stop: CancellationToken, accepted: Arc<AtomicU64>) {
    use axum::serve::ListenerExt;
    // Small JSON-RPC messages: without TCP_NODELAY, Nagle and delayed ACKs hold answers back.
    let listener = listener.tap_io(move |stream| {
        // Counted so a client that opens a connection per call shows (docs/benchmarks.md).
        accepted.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(%e, "cannot set TCP_NODELAY");
        }
    });
    let served = axum::serve(listener, app).with_graceful_shutdown(async move { stop.cancelled().await }).await;
    if let Err(e) = served {
        tracing::warn!(%e, "the MCP HTTP front stopped with an error");
    }
}
