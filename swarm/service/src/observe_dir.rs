//! The per-user directory where observe sockets live, and the checks that
//! keep it private: owned by the user, mode 0700, not a symlink.

use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::observe::ObserveError;

/// The directory for this user's observe sockets (and grids' tmux sockets,
/// and daemons' sockets): `$XDG_RUNTIME_DIR/skep`, else `/run/user/<uid>/skep`
/// when that runtime directory exists, else `/tmp/skep-<uid>`.
///
/// MCP clients start `skep mcp` with a stripped environment (no
/// `XDG_RUNTIME_DIR`): falling back to the directory the login session's
/// `XDG_RUNTIME_DIR` normally is lets it find the daemon a terminal started.
pub fn observe_dir() -> PathBuf {
    let login_runtime = PathBuf::from(format!("/run/user/{}", uid()));
    runtime_dir(std::env::var_os("XDG_RUNTIME_DIR").as_deref(), &login_runtime, uid())
}

fn runtime_dir(xdg: Option<&std::ffi::OsStr>, login_runtime: &Path, uid: u32) -> PathBuf {
    match xdg {
        Some(dir) if Path::new(dir).is_absolute() => Path::new(dir).join("skep"),
        _ if owned_dir(login_runtime, uid) => login_runtime.join("skep"),
        _ => PathBuf::from(format!("/tmp/skep-{uid}")),
    }
}

fn owned_dir(dir: &Path, uid: u32) -> bool {
    std::fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir() && m.uid() == uid)
}

/// The real uid of this process.
pub fn uid() -> u32 {
    // SAFETY: getuid has no preconditions and cannot fail.
    unsafe { libc::getuid() }
}

/// Creates `dir` (mode 0700) if missing; refuses one that is a symlink, not
/// ours, or that group or others may enter.
pub fn ensure_private_dir(dir: &Path) -> Result<(), ObserveError> {
    let refuse = |reason: String| ObserveError::Directory { path: dir.to_path_buf(), reason };
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(refuse(format!("cannot create it ({e}); set XDG_RUNTIME_DIR or pass a path"))),
    }
    let meta = std::fs::symlink_metadata(dir).map_err(|e| refuse(format!("cannot inspect it ({e})")))?;
    if !meta.is_dir() {
        return Err(refuse("not a directory (a symlink or file is in the way); remove it".into()));
    }
    if meta.uid() != uid() {
        return Err(refuse(format!(
            "owned by uid {}, not by you (uid {}); remove it or use another path",
            meta.uid(),
            uid()
        )));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(refuse(format!("mode {mode:o} lets others in; run `chmod 700 {}`", dir.display())));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A private temporary directory (removed when dropped) and a path
    /// inside it that does not exist yet.
    fn scratch(name: &str) -> (tempfile::TempDir, PathBuf) {
        let tmp = tempfile::Builder::new().prefix("skep-observe-dir-").tempdir().unwrap();
        let dir = tmp.path().join(name);
        (tmp, dir)
    }

    #[test]
    fn without_xdg_runtime_dir_the_login_runtime_dir_is_used_when_it_is_ours() {
        let tmp = tempfile::tempdir().unwrap();
        let me = uid();
        let login = tmp.path().join("run-user");
        let xdg = tmp.path().join("xdg");
        assert_eq!(runtime_dir(Some(xdg.as_os_str()), &login, me), xdg.join("skep"));
        assert_eq!(runtime_dir(None, &login, me), PathBuf::from(format!("/tmp/skep-{me}")));
        std::fs::create_dir(&login).unwrap();
        // A stripped environment (no XDG_RUNTIME_DIR) finds what a login session's would have named.
        assert_eq!(runtime_dir(None, &login, me), login.join("skep"));
        assert_eq!(runtime_dir(Some(std::ffi::OsStr::new("relative")), &login, me), login.join("skep"));
        // Someone else's directory is never used.
        assert_eq!(runtime_dir(None, &login, me + 1), PathBuf::from(format!("/tmp/skep-{}", me + 1)));
    }

    #[test]
    fn creates_a_0700_directory() {
        let (_tmp, dir) = scratch("create");
        ensure_private_dir(&dir).unwrap();
        assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
        ensure_private_dir(&dir).unwrap();
    }

    #[test]
    fn refuses_a_directory_others_may_enter() {
        let (_tmp, dir) = scratch("wide");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let err = ensure_private_dir(&dir).unwrap_err().to_string();
        assert!(err.contains("mode 755") && err.contains("chmod 700"), "{err}");
    }

    #[test]
    fn refuses_a_symlink() {
        let (tmp, dir) = scratch("link");
        let target = tmp.path().join("target");
        std::fs::DirBuilder::new().mode(0o700).create(&target).unwrap();
        std::os::unix::fs::symlink(&target, &dir).unwrap();
        let err = ensure_private_dir(&dir).unwrap_err().to_string();
        assert!(err.contains("not a directory"), "{err}");
    }
}
