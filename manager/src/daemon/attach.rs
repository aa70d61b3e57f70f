//! Attaching to the config's daemon: which config (like cargo finds
//! Cargo.toml), connecting, starting the daemon on first use (like Bazel),
//! the version handshake, and a reload when the config file is newer than
//! the daemon's copy.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use serde_json::Value;
use skep_bridge::{Client, ClientConfig, RequestOptions};
use skep_service::daemon::{DaemonLock, DaemonPaths, discover_config, spawn_detached};
use tokio::net::UnixStream;

/// `SKEP_NO_DAEMON=1` (any value but empty or `0`) is `--no-daemon` for every command.
pub const NO_DAEMON_ENV: &str = "SKEP_NO_DAEMON";

/// How long a daemon may take to start its roles' warm agents and open its socket.
const START_LIMIT: Duration = Duration::from_secs(120);
/// How long a daemon may take to stop its agents and let go of its lock.
pub const STOP_LIMIT: Duration = Duration::from_secs(30);
/// Poll interval while a daemon starts or stops.
const POLL: Duration = Duration::from_millis(20);
/// How long a daemon's own methods (status, reload, shutdown) may take.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(120);

/// Whether this command runs its own throw-away orchestrator.
pub fn no_daemon(flag: bool) -> bool {
    flag || std::env::var_os(NO_DAEMON_ENV).is_some_and(|v| !v.is_empty() && v != "0")
}

/// The config a command means: `--config FILE`, else the nearest skep.toml
/// from the working directory up, else `None` (the built-in demo). Canonical,
/// so every spelling of one file finds one daemon.
pub fn target(config: Option<&Path>) -> anyhow::Result<Option<PathBuf>> {
    let found = match config {
        Some(path) => Some(path.to_path_buf()),
        None => discover_config(&std::env::current_dir().context("cannot read the working directory")?),
    };
    found
        .map(|path| path.canonicalize().with_context(|| format!("cannot find the config {}", path.display())))
        .transpose()
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
pub async fn control(client: &Client, method: &str) -> anyhow::Result<Value> {
    let options = RequestOptions { timeout: Some(CONTROL_TIMEOUT) };
    let raw = client.call_raw(method, None, options).await.with_context(|| format!("{method} failed"))?;
    serde_json::from_str(raw.get()).with_context(|| format!("{method} answered something that is not JSON"))
}

/// The config's daemon, connected: started first if none runs (detached,
/// marked auto-started), replaced if it is an idle auto-started one of
/// another version, and asked to reload if the config file changed since it
/// loaded it.
pub async fn attach(config: Option<&Path>) -> anyhow::Result<Client> {
    attach_with(config, &plain).await
}

/// [`attach`], with the client made by `connector`.
pub async fn attach_with(config: Option<&Path>, connector: &Connector) -> anyhow::Result<Client> {
    let paths = DaemonPaths::for_config(config);
    let client = match connect_with(&paths.socket, connector).await {
        Ok(client) => client,
        Err(_) => start(config, &paths, true, connector).await?,
    };
    let status = control(&client, "daemon/status").await?;
    let client = match check_version(&status) {
        Ok(()) => client,
        Err(theirs) if replaceable(&status) => {
            tracing::info!(theirs, "replacing an idle auto-started daemon of another version");
            stop(client, &paths).await?;
            start(config, &paths, true, connector).await?
        }
        Err(theirs) => bail!(
            "the daemon for {} is skep {theirs}, this is skep {}; stop it with `skep down{}` and run again",
            paths.identity,
            env!("CARGO_PKG_VERSION"),
            config.map(|c| format!(" --config {}", c.display())).unwrap_or_default(),
        ),
    };
    if let Some(path) = config
        && newer_than_loaded(path, &status)
    {
        eprintln!("skep: {} changed since the daemon loaded it; reloading", path.display());
        if let Err(e) = control(&client, "daemon/reload").await {
            // The daemon keeps serving the config it has: this call goes ahead on it.
            eprintln!("skep: the changed config was refused, the daemon keeps its previous one: {e:#}");
        }
    }
    Ok(client)
}

/// Starts the config's daemon detached and connects once it serves (its
/// warm agents ready); says why if it dies first.
pub async fn start(
    config: Option<&Path>,
    paths: &DaemonPaths,
    auto_started: bool,
    connector: &Connector,
) -> anyhow::Result<Client> {
    let exe = std::env::current_exe().context("cannot find skep's own executable")?;
    let mut command = std::process::Command::new(exe);
    command.arg("daemon");
    if let Some(config) = config {
        command.arg("--config").arg(config);
    }
    if auto_started {
        command.arg("--auto-started");
    }
    spawn_detached(command, &paths.log).with_context(|| format!("cannot start the daemon for {}", paths.identity))?;
    let started = Instant::now();
    loop {
        if let Ok(client) = connect_with(&paths.socket, connector).await {
            return Ok(client);
        }
        // A daemon holds its lock from its first moments; after a grace for
        // the exec, a free lock and no socket mean it died.
        if started.elapsed() > Duration::from_secs(1) && lock_is_free(paths) {
            bail!("the daemon for {} exited while starting:\n{}", paths.identity, log_tail(&paths.log, 20));
        }
        if started.elapsed() > START_LIMIT {
            bail!(
                "the daemon for {} did not open {} within {} s; see its log {}",
                paths.identity,
                paths.socket.display(),
                START_LIMIT.as_secs(),
                paths.log.display()
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Asks the daemon to stop and waits until it has let go of its lock (its agents are gone by then).
pub async fn stop(client: Client, paths: &DaemonPaths) -> anyhow::Result<()> {
    let options = RequestOptions { timeout: Some(CONTROL_TIMEOUT) };
    // The answer may race the daemon closing the connection: either is fine.
    let _ = client.call_raw("shutdown", None, options).await;
    drop(client);
    let asked = Instant::now();
    while !lock_is_free(paths) {
        if asked.elapsed() > STOP_LIMIT {
            bail!("the daemon for {} did not stop within {} s", paths.identity, STOP_LIMIT.as_secs());
        }
        tokio::time::sleep(POLL).await;
    }
    Ok(())
}

/// Whether no daemon holds the config's lock.
pub fn lock_is_free(paths: &DaemonPaths) -> bool {
    !DaemonLock::is_held(&paths.lock)
}

fn check_version(status: &Value) -> Result<(), String> {
    match status["version"].as_str() {
        Some(env!("CARGO_PKG_VERSION")) => Ok(()),
        theirs => Err(theirs.unwrap_or("of an unknown version").to_owned()),
    }
}

/// An auto-started daemon with nobody but us connected and no call running.
fn replaceable(status: &Value) -> bool {
    status["autoStarted"] == true && status["clients"] == 1 && status["agents"]["busy"] == 0
}

fn newer_than_loaded(path: &Path, status: &Value) -> bool {
    let Some(loaded) = status["configModifiedUnixMs"].as_u64() else { return false };
    let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
    modified.and_then(|m| m.duration_since(UNIX_EPOCH).ok()).is_some_and(|m| m.as_millis() as u64 > loaded)
        && modified.is_some_and(|m| m <= SystemTime::now())
}

/// The last `lines` lines of a log, for an error message.
pub fn log_tail(log: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
