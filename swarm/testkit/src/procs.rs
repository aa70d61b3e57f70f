//! Checks on processes and process trees, polled against a deadline: a test
//! that waits for a process to go fails with the pids still alive, never hangs.

use std::path::Path;
use std::time::Duration;

use tokio::time::Instant;

/// Bound on waiting for processes to disappear or files to appear.
pub const GONE_LIMIT: Duration = Duration::from_secs(30);

/// Whether no process has this pid any more (a zombie still counts as there).
pub fn gone(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else { return true };
    // SAFETY: signal 0 sends nothing; it only asks whether the pid exists.
    let alive = unsafe { libc::kill(pid, 0) } == 0;
    !alive && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
}

/// Polls `condition` until it holds, failing the test after `within`.
pub async fn eventually(what: &str, within: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out after {within:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The whitespace-separated pids in `file`, which must hold at least one.
pub fn pids_in(file: &Path) -> Vec<u32> {
    let text = std::fs::read_to_string(file)
        .unwrap_or_else(|e| panic!("the test command did not write its pids to {}: {e}", file.display()));
    let pids: Vec<u32> = text.split_whitespace().map(|p| p.parse().expect("a pid")).collect();
    assert!(!pids.is_empty(), "no pids in {}", file.display());
    pids
}

/// Polls until every pid is gone; fails the test at [`GONE_LIMIT`], naming the survivors.
pub async fn wait_gone(pids: &[u32], what: &str) {
    let deadline = Instant::now() + GONE_LIMIT;
    while !pids.iter().all(|&p| gone(p)) {
        let alive: Vec<u32> = pids.iter().copied().filter(|&p| !gone(p)).collect();
        assert!(Instant::now() < deadline, "{what}: still alive after {GONE_LIMIT:?}: {alive:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A command that starts a grandchild ignoring SIGTERM in its own group,
/// writes its pid and the grandchild's to `file`, then waits.
pub fn tree_command(file: &Path) -> Vec<String> {
    let script = format!("trap '' TERM; sleep 1000 & echo $$ $! > {}.tmp && mv {0}.tmp {0}; wait", file.display());
    vec!["/bin/sh".into(), "-c".into(), script]
}

/// Waits (bounded) until `file` exists: the command is up.
pub async fn wait_for_file(file: &Path) {
    let deadline = Instant::now() + GONE_LIMIT;
    while !file.exists() {
        assert!(Instant::now() < deadline, "{} never appeared", file.display());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
