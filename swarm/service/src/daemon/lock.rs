//! One daemon per config: the daemon holds an exclusive `flock` on its lock
//! file for as long as it lives. The kernel drops the lock when the process
//! dies, however it dies, so a crashed daemon never blocks the next one.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::fd::AsFd;
use std::path::Path;

use rustix::fs::{FlockOperation, flock};

/// The held lock; dropping it (or dying) releases it.
#[derive(Debug)]
pub struct DaemonLock {
    _file: File,
}

impl DaemonLock {
    /// Takes the lock, writing our pid in the file; `Ok(Err(pid))` if a live
    /// daemon holds it (its pid, when it wrote one).
    pub fn acquire(path: &Path) -> std::io::Result<Result<DaemonLock, Option<u32>>> {
        use std::os::unix::fs::OpenOptionsExt;
        let mut file =
            std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).mode(0o600).open(path)?;
        match flock(file.as_fd(), FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                return Ok(Err(text.trim().parse().ok()));
            }
            Err(e) => return Err(e.into()),
        }
        file.set_len(0)?;
        file.rewind()?;
        write!(file, "{}", std::process::id())?;
        Ok(Ok(DaemonLock { _file: file }))
    }

    /// Whether a live daemon holds the lock at `path`. Probes without
    /// writing; the probe holds the lock for an instant, which a starting
    /// daemon rides out by retrying its acquire.
    pub fn is_held(path: &Path) -> bool {
        let Ok(file) = std::fs::File::open(path) else { return false };
        match flock(file.as_fd(), FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => false,
            Err(_) => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_and_told_the_first_ones_pid_until_it_lets_go() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("d.lock");
        let first = DaemonLock::acquire(&path).unwrap().unwrap();
        // flock locks belong to the open file description: a second open is a second holder.
        assert_eq!(DaemonLock::acquire(&path).unwrap().unwrap_err(), Some(std::process::id()));
        assert!(DaemonLock::is_held(&path));
        drop(first);
        assert!(!DaemonLock::is_held(&path));
        assert!(DaemonLock::acquire(&path).unwrap().is_ok());
    }
}
