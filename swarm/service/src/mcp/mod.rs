//! The MCP gateway: the daemon speaks MCP to MCP clients, offering the tools
//! of every role that has them, one list over warm, pooled servers shared by
//! every session (docs/mcp.md).
//!
//! Two ways in, one server per session (`handler.rs`):
//! - a Unix socket beside the control socket, one MCP session per
//!   connection, which `skep mcp` relays its stdio to (`stream.rs`);
//! - Streamable HTTP at `http://LISTEN/mcp` when `[mcp] listen` is set
//!   (`http.rs`), behind a bearer token (`guard.rs`).
//!
//! # Layout
//! - `catalog.rs`: aggregation and naming: `<role>__<tool>`, and back.
//! - `handler.rs`: rmcp's `ServerHandler` over the swarm: initialize, ping, tools/list, tools/call.
//! - `pages.rs`: a server's whole list, following `nextCursor` page by page.
//! - `notify.rs`: `tools/list_changed` to every session when a server's, or the roles', list changes.
//! - `resources.rs`: resources (URIs as `skep://<role>/...`), templates and prompts, merged like tools.
//! - `registry.rs`: the open sessions and the agents serving them, for stats, status and the grid.
//! - `spares.rs`: `share = "session"`: an agent per session, from warm spares, stopped with it.
//! - `stream.rs`: sessions over the Unix socket `skep mcp` relays to.
//! - `http.rs`: the Streamable HTTP front (rmcp's service on axum).
//! - `json_answer.rs`: a POST's single response as `application/json`, not an SSE stream.
//! - `guard.rs`: the bearer token file and its check.

mod catalog;
mod guard;
mod handler;
mod http;
mod json_answer;
mod notify;
mod pages;
mod registry;
mod resources;
mod spares;
mod stream;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use skep_swarm::{Config, McpConfig, RoleConfig, Share, Swarm};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::ObserveError;
use crate::socket::{Presence, bind};
use handler::Shared;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use spares::Spares;

pub use guard::{TokenError, load_or_create_token};

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GatewayError {
    /// The session socket is unusable.
    #[error(transparent)]
    Socket(#[from] ObserveError),
    /// The HTTP address cannot be bound.
    #[error("cannot listen for MCP over HTTP on {addr}")]
    Http {
        /// `[mcp] listen`.
        addr: SocketAddr,
        /// The underlying failure.
        #[source]
        source: std::io::Error,
    },
    /// The bearer token file is unusable.
    #[error(transparent)]
    Token(#[from] TokenError),
}

/// A running gateway; [`Gateway::stop`] ends its sessions and listeners.
#[derive(Debug)]
pub struct Gateway {
    stop: CancellationToken,
    tasks: JoinSet<()>,
    socket: PathBuf,
    http: Option<SocketAddr>,
    sessions: Presence,
    shared: Arc<Shared>,
    http_sessions: Arc<LocalSessionManager>,
    http_connections: Arc<AtomicU64>,
}

impl Gateway {
    /// Serves MCP sessions on `socket` and, when `config.listen` is set, over
    /// HTTP with the token kept in `token_file`. `session_roles` (`share =
    /// "session"`, see [`split_session_roles`]) get their spares started first.
    pub async fn start(
        swarm: Swarm,
        session_roles: Vec<RoleConfig>,
        config: &McpConfig,
        socket: &Path,
        token_file: &Path,
    ) -> Result<Gateway, GatewayError> {
        let stop = CancellationToken::new();
        let sessions = Presence::default();
        let spares = Spares::start(session_roles, &stop).await;
        let shared = Arc::new(Shared {
            swarm,
            spares,
            separator: Arc::from(config.separator.as_str()),
            listeners: notify::Listeners::default(),
            registry: Arc::default(),
        });
        // A session no message crossed for `session_idle` is ended by rmcp,
        // which drops its server: its own agents stop (a client that never DELETEs).
        let mut http_sessions = LocalSessionManager::default();
        http_sessions.session_config.keep_alive = Some(config.session_idle);
        let http_sessions = Arc::new(http_sessions);
        let mut tasks = JoinSet::new();
        let mut http = None;
        let http_connections = Arc::new(AtomicU64::new(0));
        if let Some(addr) = config.listen {
            let token: Arc<str> = Arc::from(load_or_create_token(token_file)?);
            let listener = http::bind(addr).await.map_err(|source| GatewayError::Http { addr, source })?;
            http = Some(listener.local_addr().map_err(|source| GatewayError::Http { addr, source })?);
            let app = http::router(Arc::clone(&shared), Arc::clone(&http_sessions), config, token, stop.child_token());
            tasks.spawn(http::serve(listener, app, stop.clone(), Arc::clone(&http_connections)));
        }
        let listener = bind(socket).await?;
        tasks.spawn(notify::watch(Arc::clone(&shared), stop.clone()));
        tasks.spawn(stream::accept_sessions(listener, Arc::clone(&shared), stop.clone(), sessions.clone()));
        tracing::info!(socket = %socket.display(), http = ?http, "MCP gateway ready");
        Ok(Gateway {
            stop,
            tasks,
            socket: socket.to_path_buf(),
            http,
            sessions,
            shared,
            http_sessions,
            http_connections,
        })
    }

    /// The HTTP front's bound address (its port resolved when `listen` asked for 0).
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http
    }

    /// The Unix socket `skep mcp` relays to.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// A handle on the gateway's live figures, for `daemon/status`.
    pub fn view(&self) -> GatewayView {
        GatewayView {
            relay_sessions: self.sessions.clone(),
            http_sessions: Arc::clone(&self.http_sessions),
            shared: Arc::clone(&self.shared),
            socket: self.socket.clone(),
            http: self.http,
            http_connections: Arc::clone(&self.http_connections),
        }
    }

    /// Stops accepting, ends every session (their calls are cancelled), removes the socket.
    pub async fn stop(mut self) {
        self.stop.cancel();
        while self.tasks.join_next().await.is_some() {}
        self.shared.spares.stop().await;
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// What `daemon/status` shows of the gateway; clones share the live figures.
#[derive(Debug, Clone)]
pub struct GatewayView {
    relay_sessions: Presence,
    http_sessions: Arc<LocalSessionManager>,
    shared: Arc<Shared>,
    socket: PathBuf,
    http: Option<SocketAddr>,
    http_connections: Arc<AtomicU64>,
}

impl GatewayView {
    /// The ways in, the sessions open now (counted, and each with its
    /// figures), and per role the agents serving them.
    pub async fn status(&self) -> serde_json::Value {
        let http_sessions = self.http_sessions.sessions.read().await.len();
        let per_session: Vec<serde_json::Value> = (self.shared.spares.counts().into_iter())
            .map(|(role, held, spare)| serde_json::json!({ "role": role, "sessionAgents": held, "spares": spare }))
            .collect();
        let open = self.shared.registry.sessions().await;
        let serving = serving(&self.shared, &open).await;
        serde_json::json!({
            "socket": self.socket,
            "http": self.http.map(|a| format!("http://{a}/mcp")),
            "sessions": { "stdio": self.relay_sessions.now(), "http": http_sessions },
            "httpConnections": self.http_connections.load(Ordering::Relaxed),
            "perSession": per_session,
            "open": open,
            "roles": serving,
        })
    }
}

impl GatewayView {
    /// Tells every session its lists changed: a reload added, changed or removed roles.
    pub async fn roles_changed(&self) {
        self.shared.listeners.changed(&notify::ALL_LISTS).await;
    }
}

/// Per role offering tools, the processes serving MCP sessions: a pooled
/// role's agents (every session shares them), and for a `share = "session"`
/// role each open session's own agent (`open`, the registry's sessions).
async fn serving(shared: &Shared, open: &[serde_json::Value]) -> Vec<serde_json::Value> {
    let agents = shared.swarm.agents().await;
    let mut roles: Vec<serde_json::Value> = (catalog::offering(&shared.swarm).iter())
        .map(|role| {
            let pids: Vec<u32> = (agents.iter()).filter(|a| a.role == role.name && a.pid != 0).map(|a| a.pid).collect();
            serde_json::json!({ "role": role.name, "share": "pool", "pids": pids })
        })
        .collect();
    for role in shared.spares.configs() {
        let pids: Vec<&serde_json::Value> = (open.iter())
            .flat_map(|s| s["agents"].as_array().into_iter().flatten())
            .filter(|a| a["role"] == role.name.as_str())
            .map(|a| &a["pid"])
            .collect();
        roles.push(serde_json::json!({ "role": role.name, "share": "session", "pids": pids }));
    }
    roles
}

/// Takes the `share = "session"` roles out of `config`: the gateway serves
/// them, an agent per MCP session, and the shared swarm never pools them.
pub fn split_session_roles(config: &mut Config) -> Vec<RoleConfig> {
    let names: Vec<String> =
        config.roles.values().filter(|r| r.share == Share::Session).map(|r| r.name.clone()).collect();
    names.into_iter().filter_map(|name| config.roles.remove(&name)).collect()
}
