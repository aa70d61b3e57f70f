//! Which config a command means (like cargo finds Cargo.toml), whether it
//! wants the daemon at all, and attaching to it with skep's own executable
//! (the library side is `skep_service::daemon::attach`).

use std::path::{Path, PathBuf};

use anyhow::Context;
use skep_bridge::Client;
use skep_service::daemon::attach::{self as lib, Attached, Connector};
use skep_service::daemon::discover_config;

pub use lib::{connect, control, plain};

/// `SKEP_NO_DAEMON=1` (any value but empty or `0`) is `--no-daemon` for every command.
pub const NO_DAEMON_ENV: &str = "SKEP_NO_DAEMON";

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

/// The config's daemon, connected (started first if none runs).
pub async fn attach(config: Option<&Path>) -> anyhow::Result<Client> {
    attach_with(config, &plain).await
}

/// [`attach`], with the client made by `connector`; says on stderr when the
/// daemon reloaded a changed config first, or refused it.
pub async fn attach_with(config: Option<&Path>, connector: &Connector) -> anyhow::Result<Client> {
    let exe = std::env::current_exe().context("cannot find skep's own executable")?;
    let (client, attached) = lib::attach(config, &exe, connector).await?;
    let file = config.map(|c| c.display().to_string()).unwrap_or_default();
    match attached {
        Attached::Reloaded { at_next_start } if at_next_start.is_empty() => {
            eprintln!("skep: {file} changed since the daemon loaded it; reloaded")
        }
        Attached::Reloaded { at_next_start } => eprintln!(
            "skep: {file} changed since the daemon loaded it; reloaded its roles. {} changed too and take effect at the daemon's next start (`skep down`, then any command)",
            at_next_start.join(", ")
        ),
        Attached::ReloadRefused => {
            eprintln!(
                "skep: {file} changed but does not load (see `skep reload`); the daemon keeps its previous config"
            )
        }
        Attached::Running | Attached::Started => {}
    }
    Ok(client)
}

/// Starts the config's daemon (not marked auto-started: `skep up`).
pub async fn start(config: Option<&Path>) -> anyhow::Result<Client> {
    let exe = std::env::current_exe().context("cannot find skep's own executable")?;
    let paths = skep_service::daemon::DaemonPaths::for_config(config);
    Ok(lib::start(config, &exe, &paths, false, &plain).await?)
}

/// Stops the daemon behind `client`.
pub async fn stop(client: Client, config: Option<&Path>) -> anyhow::Result<()> {
    Ok(lib::stop(client, &skep_service::daemon::DaemonPaths::for_config(config)).await?)
}
