//! The shared daemon: one long-lived swarm per config that every caller
//! attaches to, so warm agents outlive the callers that needed them
//! (docs/daemon.md).
//!
//! Its control socket serves every sidecar method (`rpc.rs`), plus
//! `daemon/status`, `daemon/reload` and `observe/info`, to any number of
//! connections of our own user at once. A connection that closes has its
//! in-flight calls cancelled on the wire at once (no grace period), and each
//! connection's calls in flight are bounded (-32004 past the bound).
//!
//! - `paths.rs`: one daemon per config: its socket, lock and log paths; config discovery.
//! - `lock.rs`: the flock that keeps a second daemon for the same config out.
//! - `idle.rs`: idle exit.
//! - `log.rs`: the bounded log file.
//! - `spawn.rs`: starting a daemon detached from its caller.
//! - `reload.rs`: a reload's answer, and the tables a reload cannot apply.
//! - `attach.rs`: a client's side: connect, start on first use, version handshake, stop, reload if newer.

pub mod attach;
mod idle;
mod lock;
mod log;
mod paths;
mod reload;
mod spawn;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use skep_bridge::{ErrorObjectOwned, RpcModule, Server, ServerConfig};
use skep_swarm::{Config, Swarm, SwarmError};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::ObserveError;
use crate::mcp::{Gateway, GatewayError, GatewayView, split_session_roles};
use crate::observe::{agent_counts, remote_counts};
use crate::observe_dir::{ensure_private_dir, observe_dir};
use crate::rpc::{Sidecar, rpc_module};
use crate::socket::{Presence, accept_loop, bind};

pub use lock::DaemonLock;
pub use log::{LOG_LIMIT, log_writer};
pub use paths::{CONFIG_FILE, DEMO_IDENTITY, DaemonPaths, discover_config, state_dir};
pub use reload::Reloaded;
pub use spawn::spawn_detached;

/// The JSON-RPC error code a reload answers when the new config does not load.
pub const RELOAD_REFUSED: i32 = skep_bridge::code::INVALID_PARAMS;

/// What a daemon is started for.
#[derive(Debug)]
pub struct DaemonSpec {
    /// The config file, canonical; `None` for the built-in demo.
    pub config_path: Option<PathBuf>,
    /// Its roles, already loaded (the demo's, without a file).
    pub config: Config,
    /// Started by a client on first use rather than by `skep up`: a newer
    /// client may then replace it when it is idle.
    pub auto_started: bool,
}

/// Why a daemon could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DaemonError {
    /// A live daemon already serves this config.
    #[error("a daemon for {identity} is already running (pid {pid}) on {socket}")]
    AlreadyRunning {
        /// The config's identity.
        identity: String,
        /// Its pid, or `?`.
        pid: String,
        /// Its socket.
        socket: PathBuf,
    },
    /// The lock file cannot be opened.
    #[error("cannot take the daemon lock {path}")]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// The underlying failure.
        #[source]
        source: std::io::Error,
    },
    /// The private directory or the socket is unusable.
    #[error(transparent)]
    Socket(#[from] ObserveError),
    /// The swarm did not start.
    #[error("cannot start the swarm")]
    Swarm(#[from] SwarmError),
    /// The MCP gateway did not start.
    #[error("cannot start the MCP gateway")]
    Mcp(#[from] GatewayError),
    /// The config's `[cluster]` could not be joined (docs/cluster.md).
    #[error("cannot join the cluster")]
    Cluster(#[from] skep_cluster::ClusterError),
}

impl From<skep_cluster::StartError> for DaemonError {
    fn from(e: skep_cluster::StartError) -> DaemonError {
        match e {
            skep_cluster::StartError::Cluster(e) => DaemonError::Cluster(e),
            skep_cluster::StartError::Swarm(e) => DaemonError::Swarm(e),
        }
    }
}

/// Why [`Daemon::stopped`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// A client called `shutdown` (`skep down`), or the owner asked.
    Asked,
    /// Nobody was connected for `idle_exit`.
    Idle,
}

/// A running daemon. [`Daemon::stop`] ends it in order.
#[derive(Debug)]
pub struct Daemon {
    state: Arc<State>,
    shutdown: CancellationToken,
    stop_accepting: CancellationToken,
    accept: JoinHandle<()>,
    mcp: Gateway,
    _lock: DaemonLock,
}

/// What the control socket's own methods read: one owner (the daemon), shared by reference.
#[derive(Debug)]
struct State {
    swarm: Swarm,
    paths: DaemonPaths,
    config_path: Option<PathBuf>,
    auto_started: bool,
    started: SystemTime,
    started_at: Instant,
    idle_exit: Option<Duration>,
    presence: Presence,
    /// The config file's modification time when it was last loaded.
    config_modified: Mutex<Option<SystemTime>>,
    /// One reload at a time.
    reloading: tokio::sync::Mutex<()>,
    /// The tables read at the start, for a reload to say which changed.
    start_only: reload::StartOnly,
    /// The MCP gateway's ways in and sessions, for `daemon/status`.
    mcp: GatewayView,
}

impl Daemon {
    /// Takes the config's lock, starts the swarm (its `min_warm` agents
    /// ready), and serves the control socket.
    pub async fn start(spec: DaemonSpec) -> Result<Daemon, DaemonError> {
        let paths = DaemonPaths::for_config(spec.config_path.as_deref());
        ensure_private_dir(&observe_dir())?;
        let lock = match DaemonLock::acquire(&paths.lock) {
            Ok(Ok(lock)) => lock,
            Ok(Err(pid)) => {
                return Err(DaemonError::AlreadyRunning {
                    identity: paths.identity.clone(),
                    pid: pid.map_or_else(|| "?".to_owned(), |p| p.to_string()),
                    socket: paths.socket.clone(),
                });
            }
            Err(source) => return Err(DaemonError::Lock { path: paths.lock.clone(), source }),
        };
        let config_modified = spec.config_path.as_deref().and_then(modified);
        let start_only = reload::StartOnly::of(&spec.config);
        let mut daemon_config = spec.config.daemon;
        let mcp_config = spec.config.mcp.clone();
        // HTTP clients hold no connection the idle watch can see: a daemon serving them stays up.
        if mcp_config.listen.is_some() {
            daemon_config.idle_exit = None;
        }
        let mut config = spec.config;
        let session_roles = split_session_roles(&mut config);
        let swarm = skep_cluster::start_swarm(config, "skep daemon").await?;
        // We hold the lock: a socket file left behind is a dead daemon's.
        let listener = bind(&paths.socket).await?;
        let mcp =
            Gateway::start(swarm.clone(), session_roles, &mcp_config, &paths.mcp_socket, &paths.mcp_token).await?;
        let mcp_view = mcp.view();
        let state = Arc::new(State {
            swarm,
            paths,
            config_path: spec.config_path,
            auto_started: spec.auto_started,
            started: SystemTime::now(),
            started_at: Instant::now(),
            idle_exit: daemon_config.idle_exit,
            presence: Presence::default(),
            config_modified: Mutex::new(config_modified),
            reloading: tokio::sync::Mutex::new(()),
            start_only,
            mcp: mcp_view,
        });
        let shutdown = CancellationToken::new();
        let server_config = ServerConfig {
            max_in_flight: daemon_config.max_in_flight_per_client,
            // A client that leaves takes its calls with it: cancel them now.
            shutdown_grace: Duration::ZERO,
            ..ServerConfig::default()
        };
        let server = Arc::new(Server::new(control_module(&state, shutdown.clone()), server_config));
        let stop_accepting = CancellationToken::new();
        let accept = tokio::spawn(accept_loop(listener, server, stop_accepting.clone(), state.presence.clone()));
        tracing::info!(socket = %state.paths.socket.display(), config = %state.paths.identity, "daemon ready");
        Ok(Daemon { state, shutdown, stop_accepting, accept, mcp, _lock: lock })
    }

    /// The control socket.
    pub fn socket(&self) -> &Path {
        &self.state.paths.socket
    }

    /// Its MCP gateway.
    pub fn mcp(&self) -> &Gateway {
        &self.mcp
    }

    /// The swarm it serves.
    pub fn swarm(&self) -> &Swarm {
        &self.state.swarm
    }

    /// Cancelling this stops the daemon (as the `shutdown` method does).
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Re-reads the config file and applies its roles (see `Swarm::reload`);
    /// a config that does not load is refused and the old one keeps serving.
    /// Changed `[daemon]`, `[mcp]` or `[cluster]` tables are named, not applied.
    pub async fn reload(&self) -> Result<Reloaded, String> {
        self.state.reload().await
    }

    /// Resolves when the daemon is asked to stop or has been idle for `idle_exit`.
    pub async fn stopped(&self) -> StopReason {
        let idle = async {
            match self.state.idle_exit {
                Some(after) => idle::idle_for(self.state.presence.watch(), after).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = self.shutdown.cancelled() => StopReason::Asked,
            () = idle => StopReason::Idle,
        }
    }

    /// Stops accepting, ends every connection (their calls are cancelled),
    /// stops every agent, and removes the socket.
    pub async fn stop(self) {
        self.stop_accepting.cancel();
        self.mcp.stop().await;
        let _ = self.accept.await;
        let _ = std::fs::remove_file(&self.state.paths.socket);
        self.state.swarm.shutdown().await;
        tracing::info!("daemon stopped");
    }
}

impl State {
    async fn reload(&self) -> Result<Reloaded, String> {
        let _one = self.reloading.lock().await;
        let Some(path) = &self.config_path else {
            return Err("the built-in demo has no config file to reload".to_owned());
        };
        let seen = modified(path);
        let mut config = Config::load(path).map_err(|e| {
            tracing::warn!("reload refused, still serving the previous config: {e}");
            e.to_string()
        })?;
        let at_next_start = self.start_only.changed_in(&reload::StartOnly::of(&config));
        if !at_next_start.is_empty() {
            tracing::warn!(tables = ?at_next_start, "changed; they take effect at the daemon's next start");
        }
        // The gateway's per-session roles are kept as started (docs/mcp.md).
        split_session_roles(&mut config);
        let roles = self.swarm.reload(config).await;
        if !(roles.added.is_empty() && roles.replaced.is_empty() && roles.removed.is_empty()) {
            self.mcp.roles_changed().await;
        }
        *self.config_modified.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = seen;
        Ok(Reloaded { roles, at_next_start })
    }

    async fn mcp_status(&self) -> Value {
        let mut status = self.mcp.status().await;
        if !status["http"].is_null() {
            status["token"] = json!(self.paths.mcp_token);
        }
        status
    }

    async fn stats(&self) -> Value {
        let mut stats = json!(self.swarm.stats().await);
        stats["mcp"] = self.mcp_status().await;
        stats
    }

    async fn status(&self) -> Value {
        let stats = self.swarm.stats().await;
        let modified = *self.config_modified.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        json!({
            "daemon": true,
            "pid": std::process::id(),
            "version": env!("CARGO_PKG_VERSION"),
            "config": self.config_path,
            "identity": self.paths.identity,
            "socket": self.paths.socket,
            "log": self.paths.log,
            "startedUnixMs": unix_ms(self.started),
            "uptimeMs": self.started_at.elapsed().as_millis() as u64,
            // This connection counts: a client alone with the daemon sees 1.
            "clients": self.presence.now(),
            "autoStarted": self.auto_started,
            "configModifiedUnixMs": modified.map(unix_ms),
            "idleExitMs": self.idle_exit.map(|d| d.as_millis() as u64),
            "roles": stats.roles.len(),
            "agents": agent_counts(&stats),
            "remote": remote_counts(&stats),
            "mcp": self.mcp_status().await,
        })
    }
}

/// The sidecar's methods over the daemon's swarm, plus the daemon's own.
fn control_module(state: &Arc<State>, shutdown: CancellationToken) -> RpcModule<Sidecar> {
    let mut module = rpc_module(state.swarm.clone(), shutdown);
    // The daemon's stats carry its MCP gateway's sessions and the agents serving them.
    module.remove_method("swarm/stats");
    let mut own = RpcModule::new(Arc::clone(state));
    own.register_async_method("swarm/stats", |_, ctx, _| async move { ctx.stats().await }).expect("fresh name");
    own.register_async_method("daemon/status", |_, ctx, _| async move { ctx.status().await }).expect("fresh name");
    own.register_async_method("observe/info", |_, ctx, _| async move { ctx.status().await }).expect("fresh name");
    own.register_async_method("daemon/reload", |_, ctx, _| async move {
        ctx.reload().await.map_err(|message| ErrorObjectOwned::owned(RELOAD_REFUSED, message, None::<()>))
    })
    .expect("fresh name");
    module.merge(own).expect("the daemon's method names are its own");
    module
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}
