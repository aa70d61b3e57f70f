//! A client's side of the daemon, shared by the CLI and the Node package:
//! connecting, starting the daemon on first use (like Bazel's server),
//! the version handshake, stopping it, and a reload when the config file is
//! newer than the daemon's copy.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, UNIX_EPOCH};

use serde_json::Value;
use skep_bridge::{CallError, Client, ClientConfig, RequestOptions};
use tokio::net::UnixStream;

use super::{DaemonLock, DaemonPaths, spawn_detached};

/// How long a daemon may take to start its roles' warm agents and open its socket.
pub const START_LIMIT: Duration = Duration::from_secs(120);
/// How long a daemon may take to stop its agents and let go of its lock.
pub const STOP_LIMIT: Duration = Duration::from_secs(30);
/// Poll interval while a daemon starts or stops.
const POLL: Duration = Duration::from_millis(20);
/// How long a daemon's own methods (status, reload, shutdown) may take.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(120);

/// Why a client could not attach to, start or stop a daemon.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AttachError {
    /// The daemon process could not be spawned.
    #[error("cannot start the daemon for {identity} with {exe}")]
    Spawn {
        /// The config's identity.
        identity: String,
        /// The skep executable that was to run it.
        exe: PathBuf,
        /// The underlying failure.
        #[source]
        source: std::io::Error,
    },
    /// The daemon exited before it served; the end of its log says why.
    #[error("the daemon for {identity} exited while starting:\n{log_tail}")]
    Died {
        /// The config's identity.
        identity: String,
        /// The last lines of its log.
        log_tail: String,
    },
    /// The daemon did not open its socket in time.
    #[error("the daemon for {identity} did not open {} within {} s; see its log {}", socket.display(), START_LIMIT.as_secs(), log.display())]
    StartTimeout {
        /// The config's identity.
        identity: String,
        /// The socket it should have opened.
        socket: PathBuf,
        /// Its log.
        log: PathBuf,
    },
    /// The daemon did not let go of its lock in time.
    #[error("the daemon for {identity} did not stop within {} s", STOP_LIMIT.as_secs())]
    StopTimeout {
        /// The config's identity.
        identity: String,
    },
    /// The daemon is of another skep version and cannot be replaced now.
    #[error(
        "the daemon for {identity} is skep {theirs}, this is skep {ours}; stop it with `skep down{hint}` and try again"
    )]
    Version {
        /// The config's identity.
        identity: String,
        /// The daemon's version.
        theirs: String,
        /// This client's version.
        ours: &'static str,
        /// ` --config FILE`, or nothing.
        hint: String,
    },
    /// One of the daemon's methods failed.
    #[error("{method} failed")]
    Control {
        /// The method.
        method: String,
        /// How it failed.
        #[source]
        source: CallError,
    },
    /// One of the daemon's methods answered something that is not JSON.
    #[error("{method} answered something that is not JSON")]
    NotJson {
        /// The method.
        method: String,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
}

/// Makes the client over a connected stream (a plain one, or one with a notification handler).
pub type Connector = dyn Fn(UnixStream) -> Client + Send + Sync;

/// A plain client.
pub fn plain(stream: UnixStream) -> Client {
    let (reader, writer) = stream.into_split();
    Client::connect(reader, writer, ClientConfig::default())
}

/// A connection to a daemon's control socket.
pub async fn connect(socket: &Path) -> std::io::Result<Client> {
    connect_with(socket, &plain).await
}

async fn connect_with(socket: &Path, connector: &Connector) -> std::io::Result<Client> {
    Ok(connector(UnixStream::connect(socket).await?))
}

/// Calls one of the daemon's own methods and decodes the answer.
pub async fn control(client: &Client, method: &str) -> Result<Value, AttachError> {
    let options = RequestOptions { timeout: Some(CONTROL_TIMEOUT) };
    let raw = client
        .call_raw(method, None, options)
        .await
        .map_err(|source| AttachError::Control { method: method.to_owned(), source })?;
    serde_json::from_str(raw.get()).map_err(|source| AttachError::NotJson { method: method.to_owned(), source })
}

/// What a client does once attached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attached {
    /// The daemon was running and current.
    Running,
    /// It was started for this client.
    Started,
    /// The config file was newer than the daemon's copy; it reloaded. The
    /// tables it names changed too but take effect at its next start.
    Reloaded {
        /// `[daemon]`, `[mcp]`, `[cluster]`: what the reload did not apply.
        at_next_start: Vec<String>,
    },
    /// The config file was newer, and the daemon refused it (it serves the old one).
    ReloadRefused,
}

/// The config's daemon, connected: started first (with `exe daemon`,
/// detached, marked auto-started) if none runs, replaced if it is an idle
/// auto-started one of another version, and asked to reload if the config
/// file changed since it loaded it.
pub async fn attach(
    config: Option<&Path>,
    exe: &Path,
    connector: &Connector,
) -> Result<(Client, Attached), AttachError> {
    let paths = DaemonPaths::for_config(config);
    let (client, mut attached) = match connect_with(&paths.socket, connector).await {
        Ok(client) => (client, Attached::Running),
        Err(_) => (start(config, exe, &paths, true, connector).await?, Attached::Started),
    };
    let status = control(&client, "daemon/status").await?;
    let client = match status["version"].as_str() {
        Some(env!("CARGO_PKG_VERSION")) => client,
        _ if replaceable(&status) => {
            tracing::info!(theirs = %status["version"], "replacing an idle auto-started daemon of another version");
            stop(client, &paths).await?;
            attached = Attached::Started;
            start(config, exe, &paths, true, connector).await?
        }
        theirs => {
            return Err(AttachError::Version {
                identity: paths.identity,
                theirs: theirs.unwrap_or("of an unknown version").to_owned(),
                ours: env!("CARGO_PKG_VERSION"),
                hint: config.map(|c| format!(" --config {}", c.display())).unwrap_or_default(),
            });
        }
    };
    if let Some(path) = config
        && newer_than_loaded(path, &status)
    {
        attached = match control(&client, "daemon/reload").await {
            Ok(answer) => {
                let tables = answer["atNextStart"].as_array().into_iter().flatten().filter_map(Value::as_str);
                Attached::Reloaded { at_next_start: tables.map(str::to_owned).collect() }
            }
            Err(e) => {
                tracing::warn!("the changed config was refused, the daemon keeps its previous one: {e}");
                Attached::ReloadRefused
            }
        };
    }
    Ok((client, attached))
}

/// Starts the config's daemon detached and connects once it serves (its
/// warm agents ready); says why if it dies first.
pub async fn start(
    config: Option<&Path>,
    exe: &Path,
    paths: &DaemonPaths,
    auto_started: bool,
    connector: &Connector,
) -> Result<Client, AttachError> {
    let mut command = std::process::Command::new(exe);
    command.arg("daemon");
    if let Some(config) = config {
        command.arg("--config").arg(config);
    }
    if auto_started {
        command.arg("--auto-started");
    }
    spawn_detached(command, &paths.log).map_err(|source| AttachError::Spawn {
        identity: paths.identity.clone(),
        exe: exe.to_path_buf(),
        source,
    })?;
    let started = Instant::now();
    loop {
        if let Ok(client) = connect_with(&paths.socket, connector).await {
            return Ok(client);
        }
        // A daemon holds its lock from its first moments; after a grace for
        // the exec, a free lock and no socket mean it died.
        if started.elapsed() > Duration::from_secs(1) && lock_is_free(paths) {
            return Err(AttachError::Died { identity: paths.identity.clone(), log_tail: log_tail(&paths.log, 20) });
        }
        if started.elapsed() > START_LIMIT {
            return Err(AttachError::StartTimeout {
                identity: paths.identity.clone(),
                socket: paths.socket.clone(),
                log: paths.log.clone(),
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Asks the daemon to stop and waits until it has let go of its lock (its agents are gone by then).
pub async fn stop(client: Client, paths: &DaemonPaths) -> Result<(), AttachError> {
    let options = RequestOptions { timeout: Some(CONTROL_TIMEOUT) };
    // The answer may race the daemon closing the connection: either is fine.
    let _ = client.call_raw("shutdown", None, options).await;
    drop(client);
    let asked = Instant::now();
    while !lock_is_free(paths) {
        if asked.elapsed() > STOP_LIMIT {
            return Err(AttachError::StopTimeout { identity: paths.identity.clone() });
        }
        tokio::time::sleep(POLL).await;
    }
    Ok(())
}

/// Whether no daemon holds the config's lock.
pub fn lock_is_free(paths: &DaemonPaths) -> bool {
    !DaemonLock::is_held(&paths.lock)
}

/// An auto-started daemon with nobody but us connected and no call running.
fn replaceable(status: &Value) -> bool {
    status["autoStarted"] == true && status["clients"] == 1 && status["agents"]["busy"] == 0
}

fn newer_than_loaded(path: &Path, status: &Value) -> bool {
    let Some(loaded) = status["configModifiedUnixMs"].as_u64() else { return false };
    let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
    modified.and_then(|m| m.duration_since(UNIX_EPOCH).ok()).is_some_and(|m| m.as_millis() as u64 > loaded)
}

/// The last `lines` lines of a log, for an error message.
pub fn log_tail(log: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_an_idle_auto_started_daemon_is_replaced() {
        let idle = json!({"autoStarted": true, "clients": 1, "agents": {"busy": 0}});
        assert!(replaceable(&idle));
        for (key, value) in [("autoStarted", json!(false)), ("clients", json!(2))] {
            let mut busy = idle.clone();
            busy[key] = value;
            assert!(!replaceable(&busy), "{key}");
        }
        assert!(!replaceable(&json!({"autoStarted": true, "clients": 1, "agents": {"busy": 1}})));
    }

    #[test]
    fn a_config_file_newer_than_the_daemons_copy_is_noticed() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("skep.toml");
        std::fs::write(&file, "").unwrap();
        let modified = std::fs::metadata(&file).unwrap().modified().unwrap();
        let ms = modified.duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
        assert!(!newer_than_loaded(&file, &json!({"configModifiedUnixMs": ms})));
        assert!(newer_than_loaded(&file, &json!({"configModifiedUnixMs": ms - 1})));
        assert!(!newer_than_loaded(&file, &json!({"configModifiedUnixMs": null})), "the demo has no file");
    }
}
