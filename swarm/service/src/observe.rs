//! The observe socket: a Unix socket serving the swarm's read-only methods and
//! its event stream to any number of observers (`skep ls`, `skep stats`,
//! `skep grid`), so a sidecar started by any program can be watched.
//!
//! The socket lives in a directory only its user can enter (0700, owned by
//! the user, checked rather than trusted), and every connection's peer uid is
//! checked against ours, so another user cannot watch even if the mode were
//! loosened later.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::json;
use skep_bridge::{ErrorObjectOwned, RpcModule, Server, ServerConfig};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::observe_dir::{ensure_private_dir, observe_dir};
use crate::rpc::{HasSwarm, register_views};
use crate::socket::{Presence, accept_loop, bind};
use skep_swarm::Swarm;

/// Where and how to serve the observe socket.
#[derive(Debug, Clone, Default)]
pub struct ObserveOptions {
    /// The socket's path; default `<observe_dir()>/<pid>.sock` (`<pid>-N.sock` for the Nth swarm of a process).
    pub path: Option<PathBuf>,
    /// The config file the swarm was started from, shown by `skep ls`.
    pub config: Option<PathBuf>,
}

/// Why the observe socket could not be served.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ObserveError {
    /// The socket's directory is missing, not ours, or open to others.
    #[error("unsafe or unusable directory {path}: {reason}")]
    Directory {
        /// The directory.
        path: PathBuf,
        /// What is wrong and what to do.
        reason: String,
    },
    /// Another live orchestrator already serves this path.
    #[error("{path} is in use by a running orchestrator; pick another path or stop that one (see `skep ls`)")]
    InUse {
        /// The socket.
        path: PathBuf,
    },
    /// Binding the socket failed.
    #[error("cannot listen on {path}")]
    Bind {
        /// The socket.
        path: PathBuf,
        /// The underlying failure.
        #[source]
        source: std::io::Error,
    },
}

/// A served observe socket. Dropping it stops accepting, ends every observer's
/// connection and removes the socket file.
#[derive(Debug)]
pub struct Observation {
    path: PathBuf,
    stop: CancellationToken,
    accept: Option<JoinHandle<()>>,
}

/// What `observe/info` answers: enough for `skep ls` to tell orchestrators apart.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct Identity {
    pid: u32,
    config: Option<PathBuf>,
    socket: PathBuf,
    started_unix_ms: u64,
}

/// The observer's method table context.
#[derive(Debug)]
struct Observer {
    swarm: Swarm,
    identity: Identity,
}

impl HasSwarm for Observer {
    fn swarm(&self) -> &Swarm {
        &self.swarm
    }
}

/// Serves `swarm`'s read-only methods on a Unix socket until the returned
/// [`Observation`] is closed or dropped.
pub async fn observe(swarm: Swarm, options: ObserveOptions) -> Result<Observation, ObserveError> {
    let path = match options.path {
        Some(path) => path,
        None => observe_dir().join(default_name()),
    };
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    ensure_private_dir(&dir)?;
    let listener = bind(&path).await?;
    let started_unix_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    let identity = Identity { pid: std::process::id(), config: options.config, socket: path.clone(), started_unix_ms };
    let server = Arc::new(Server::new(observer_module(swarm, identity), ServerConfig::default()));
    let stop = CancellationToken::new();
    let accept = tokio::spawn(accept_loop(listener, server, stop.clone(), Presence::default()));
    tracing::info!(socket = %path.display(), "observe socket ready (skep ls, skep stats, skep grid)");
    Ok(Observation { path, stop, accept: Some(accept) })
}

impl Observation {
    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stops accepting, ends every observer's connection, and removes the socket.
    pub async fn close(mut self) {
        self.stop.cancel();
        if let Some(accept) = self.accept.take() {
            let _ = accept.await;
        }
    }
}

impl Drop for Observation {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(accept) = self.accept.take() {
            accept.abort();
        }
        // Only our own socket: a path that is no longer a socket is not ours to delete.
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The read-only methods plus `observe/info`.
fn observer_module(swarm: Swarm, identity: Identity) -> RpcModule<Observer> {
    let mut module = RpcModule::new(Observer { swarm, identity });
    module
        .register_async_method("observe/info", |_, ctx, _| async move {
            let stats = ctx.swarm.stats().await;
            let agents = agent_counts(&stats);
            let mut info = serde_json::to_value(&ctx.identity).map_err(|e| internal(&e))?;
            info["roles"] = json!(stats.roles.len());
            info["agents"] = agents;
            info["remote"] = remote_counts(&stats);
            info["version"] = json!(env!("CARGO_PKG_VERSION"));
            Ok::<_, ErrorObjectOwned>(info)
        })
        .expect("fresh name");
    register_views(&mut module);
    module
}

/// Agents of every role by state: `{"starting", "idle", "busy", "stopping"}`.
pub(crate) fn agent_counts(stats: &skep_swarm::SwarmStats) -> serde_json::Value {
    let mut agents = json!({ "starting": 0, "idle": 0, "busy": 0, "stopping": 0 });
    for role in &stats.roles {
        let counts = role.agents;
        for (key, n) in
            [("starting", counts.starting), ("idle", counts.idle), ("busy", counts.busy), ("stopping", counts.stopping)]
        {
            agents[key] = json!(agents[key].as_u64().unwrap_or(0) + n as u64);
        }
    }
    agents
}

/// Remote workers and their agents (`null` without a cluster), for `skep ls`.
pub(crate) fn remote_counts(stats: &skep_swarm::SwarmStats) -> serde_json::Value {
    match &stats.workers {
        None => serde_json::Value::Null,
        Some(workers) => json!({
            "workers": workers.len(),
            "agents": workers.iter().map(|w| w.agents.len()).sum::<usize>(),
        }),
    }
}

fn internal(e: &serde_json::Error) -> ErrorObjectOwned {
    ErrorObjectOwned::owned(skep_bridge::code::INTERNAL_ERROR, format!("internal error: {e}"), None::<()>)
}

/// `PID.sock`, then `PID-2.sock`, ... for further swarms of the same process
/// (a Node app may run several).
fn default_name() -> String {
    static SERVED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    match SERVED.fetch_add(1, std::sync::atomic::Ordering::Relaxed) {
        0 => format!("{}.sock", std::process::id()),
        n => format!("{}-{}.sock", std::process::id(), n + 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use tokio::net::UnixStream;

    #[tokio::test]
    async fn a_connection_from_ourselves_is_served_and_the_socket_goes_with_the_observation() {
        // observe creates the directory itself: give it a path that does not exist yet.
        let tmp = tempfile::Builder::new().prefix("skep-observe-unit-").tempdir().unwrap();
        let dir = tmp.path().join("observe");
        let config = skep_swarm::demo_config(vec!["/bin/cat".into()]);
        let swarm = Swarm::start(config).await.unwrap();
        let path = dir.join("o.sock");
        let observation =
            observe(swarm.clone(), ObserveOptions { path: Some(path.clone()), config: None }).await.unwrap();
        assert_eq!(observation.path(), path);
        let stream = UnixStream::connect(&path).await.unwrap();
        assert_eq!(stream.peer_cred().unwrap().uid(), crate::uid());
        let (reader, writer) = stream.into_split();
        let client = skep_bridge::Client::connect(reader, writer, Default::default());
        let info: serde_json::Value = client.call("observe/info", serde_json::json!([])).await.unwrap();
        assert_eq!(info["pid"], std::process::id());
        let refused = client.call::<_, serde_json::Value>("shutdown", serde_json::json!([])).await.unwrap_err();
        assert_eq!(refused.code(), skep_bridge::code::METHOD_NOT_FOUND);
        observation.close().await;
        assert!(!path.exists());
        client.disconnected().await;
        swarm.shutdown().await;
    }
}
