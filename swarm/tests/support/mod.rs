//! What tests of process trees share: reading the pids a test command wrote,
//! and polling (bounded) until every one of them is gone.

#![allow(dead_code)]

use std::path::Path;
use std::time::{Duration, Instant};

use rustix::io::Errno;
use rustix::process::Pid;

/// Bound on waiting for processes to disappear.
pub const GONE_LIMIT: Duration = Duration::from_secs(30);

/// Whether `pid` no longer exists at all (`kill(pid, 0)` says ESRCH; a zombie still exists).
pub fn gone(pid: i32) -> bool {
    let Some(pid) = Pid::from_raw(pid) else { return true };
    rustix::process::test_kill_process(pid) == Err(Errno::SRCH)
}

/// The whitespace-separated pids in `file`, which must hold at least one.
pub fn pids_in(file: &Path) -> Vec<i32> {
    let text = std::fs::read_to_string(file)
        .unwrap_or_else(|e| panic!("the test command did not write its pids to {}: {e}", file.display()));
    let pids: Vec<i32> = text.split_whitespace().map(|p| p.parse().expect("a pid")).collect();
    assert!(!pids.is_empty(), "no pids in {}", file.display());
    pids
}

/// Polls until every pid is gone; fails the test at [`GONE_LIMIT`].
pub async fn wait_gone(pids: &[i32], what: &str) {
    let deadline = Instant::now() + GONE_LIMIT;
    while !pids.iter().all(|&p| gone(p)) {
        let alive: Vec<i32> = pids.iter().copied().filter(|&p| !gone(p)).collect();
        assert!(Instant::now() < deadline, "{what}: still alive after {GONE_LIMIT:?}: {alive:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A command that starts a grandchild ignoring SIGTERM in its own group,
/// writes "its pid and the grandchild's" to `file`, then waits.
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
