//! Where a daemon lives: one per config, named after the config's identity
//! (its canonical path, or the built-in demo), so every caller that names the
//! same config finds the same daemon.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::observe_dir::{observe_dir, uid};

/// The identity of the daemon that serves the built-in demo role.
pub const DEMO_IDENTITY: &str = "the built-in demo";

/// The file a daemon for a config's directory is found by.
pub const CONFIG_FILE: &str = "skep.toml";

/// A daemon's files: its control socket and lock (in the private runtime
/// directory, beside the observe sockets) and its log (under the state directory).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonPaths {
    /// The canonical config path, or [`DEMO_IDENTITY`].
    pub identity: String,
    /// The control socket (mode 0600 in a 0700 directory).
    pub socket: PathBuf,
    /// Held (flock) by the one daemon of this identity while it lives.
    pub lock: PathBuf,
    /// The daemon's log, bounded (rotated past [`super::log::LOG_LIMIT`]).
    pub log: PathBuf,
    /// The MCP gateway's session socket, which `skep mcp` relays to (beside the control socket).
    pub mcp_socket: PathBuf,
    /// The MCP HTTP front's bearer token (mode 0600, under the state directory).
    pub mcp_token: PathBuf,
}

impl DaemonPaths {
    /// The paths of the daemon for `config` (already canonical), or of the demo daemon.
    pub fn for_config(config: Option<&Path>) -> DaemonPaths {
        let identity = config.map_or_else(|| DEMO_IDENTITY.to_owned(), |p| p.display().to_string());
        let digest = Sha256::digest(identity.as_bytes());
        let key: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
        let runtime = observe_dir();
        DaemonPaths {
            socket: runtime.join(format!("daemon-{key}.sock")),
            lock: runtime.join(format!("daemon-{key}.lock")),
            log: state_dir().join(format!("daemon-{key}.log")),
            mcp_socket: runtime.join(format!("daemon-{key}.mcp.sock")),
            mcp_token: state_dir().join(format!("mcp-{key}.token")),
            identity,
        }
    }
}

/// Where daemons keep their logs: `$XDG_STATE_HOME/skep`, else
/// `~/.local/state/skep`, else `/tmp/skep-<uid>/state`.
pub fn state_dir() -> PathBuf {
    let absolute = |var: &str| std::env::var_os(var).map(PathBuf::from).filter(|p| p.is_absolute());
    if let Some(state) = absolute("XDG_STATE_HOME") {
        return state.join("skep");
    }
    match absolute("HOME") {
        Some(home) => home.join(".local").join("state").join("skep"),
        None => PathBuf::from(format!("/tmp/skep-{}", uid())).join("state"),
    }
}

/// Like cargo finds Cargo.toml: `skep.toml` in `start` or the nearest parent
/// directory that has one.
pub fn discover_config(start: &Path) -> Option<PathBuf> {
    start.ancestors().map(|dir| dir.join(CONFIG_FILE)).find(|candidate| candidate.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_config_one_socket_and_the_demo_its_own() {
        let a = DaemonPaths::for_config(Some(Path::new("/p/a/skep.toml")));
        let again = DaemonPaths::for_config(Some(Path::new("/p/a/skep.toml")));
        let b = DaemonPaths::for_config(Some(Path::new("/p/b/skep.toml")));
        let demo = DaemonPaths::for_config(None);
        assert_eq!(a, again);
        assert_ne!(a.socket, b.socket);
        assert_ne!(a.socket, demo.socket);
        assert_eq!(demo.identity, DEMO_IDENTITY);
        assert_eq!(a.socket.parent(), Some(observe_dir().as_path()));
        assert!(a.socket.to_string_lossy().ends_with(".sock") && a.lock.to_string_lossy().ends_with(".lock"));
    }

    #[test]
    fn the_nearest_skep_toml_up_the_tree_is_found() {
        let tmp = tempfile::tempdir().unwrap();
        let deep = tmp.path().join("a").join("b");
        std::fs::create_dir_all(&deep).unwrap();
        assert_eq!(discover_config(&deep).filter(|p| p.starts_with(tmp.path())), None);
        std::fs::write(tmp.path().join("a").join(CONFIG_FILE), "").unwrap();
        assert_eq!(discover_config(&deep), Some(tmp.path().join("a").join(CONFIG_FILE)));
        std::fs::write(deep.join(CONFIG_FILE), "").unwrap();
        assert_eq!(discover_config(&deep), Some(deep.join(CONFIG_FILE)));
    }
}
