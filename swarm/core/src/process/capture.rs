//! Run to completion: a child that gets its input on stdin, is waited for
//! (bounded), and answers with its exit status and bounded output. Command
//! roles and workflow command steps both run this way, under one cap.

use std::process::ExitStatus;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::ChildStdout;

use super::child::ChildProcess;
use super::{SpawnError, SpawnSpec};
use crate::stderr_ring::StderrTail;

/// Most bytes of stdout kept from a run-to-completion child; the rest is read
/// and dropped, and said so. (Its stderr keeps its last 64 KiB, like an agent's.)
pub const OUTPUT_CAP: usize = 16 * 1024 * 1024;
/// How long output may keep arriving after the process has exited (a
/// grandchild may hold the pipes open).
const DRAIN_AFTER_EXIT: Duration = Duration::from_millis(200);
const READ_CHUNK: usize = 64 * 1024;

/// A child that ran to its end.
#[derive(Debug)]
pub struct Completed {
    /// Its process id (and group id, now free).
    pub pid: u32,
    /// How it exited.
    pub status: ExitStatus,
    /// Its stdout, up to [`OUTPUT_CAP`].
    pub stdout: Vec<u8>,
    /// Whether stdout went past the cap.
    pub stdout_truncated: bool,
    /// Its stderr ring.
    pub stderr: StderrTail,
    /// What the kernel accounted to it (none if someone else reaped it).
    pub usage: Option<Usage>,
}

/// A reaped child's resource usage, from `wait4`'s rusage: the child and
/// the descendants it waited for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// CPU time in user mode.
    pub user: Duration,
    /// CPU time in the kernel on its behalf.
    pub system: Duration,
    /// Peak resident set size, in bytes. Linux counts the moment between
    /// fork and exec too, when the child is still a copy of its parent.
    pub max_rss_bytes: u64,
}

impl Usage {
    pub(super) fn from_rusage(r: &libc::rusage) -> Usage {
        let time = |t: libc::timeval| {
            Duration::from_secs(t.tv_sec.max(0) as u64) + Duration::from_micros(t.tv_usec.max(0) as u64)
        };
        // Linux reports ru_maxrss in kibibytes.
        Usage { user: time(r.ru_utime), system: time(r.ru_stime), max_rss_bytes: r.ru_maxrss.max(0) as u64 * 1024 }
    }
}

/// Why a run did not complete.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// It could not be started.
    #[error(transparent)]
    Spawn(#[from] SpawnError),
    /// It was still running at its deadline; its whole group was killed and
    /// its leader reaped before this was returned.
    #[error("{program:?} did not finish within {} ms", after.as_millis())]
    Timeout {
        /// The process that was killed (its group with it).
        pid: u32,
        /// argv\[0\].
        program: String,
        /// The deadline it missed.
        after: Duration,
    },
}

/// Runs `spec` with `input` on its stdin until it exits, or until `timeout`,
/// when its group is killed. Dropping the future kills the group too.
pub async fn run_to_completion(
    spec: &SpawnSpec,
    input: Vec<u8>,
    timeout: Option<Duration>,
) -> Result<Completed, RunError> {
    let mut process = ChildProcess::spawn(spec).await?;
    let pid = process.pid();
    let stderr = process.stderr_handle();
    let (mut stdin, stdout) = process.take_stdio().expect("a fresh process still has its pipes");
    let ran = async {
        // A child that does not read its input must not block the run.
        let feed = tokio::spawn(async move {
            let _ = stdin.write_all(&input).await;
        });
        let mut output = tokio::spawn(read_capped(stdout));
        let status = process.exited().await;
        feed.abort();
        let output = match tokio::time::timeout(DRAIN_AFTER_EXIT, &mut output).await {
            Ok(Ok(output)) => output,
            _ => {
                output.abort();
                (Vec::new(), false)
            }
        };
        stderr.drained(DRAIN_AFTER_EXIT).await;
        (status, output)
    };
    let ran = match timeout {
        Some(limit) => tokio::time::timeout(limit, ran).await.ok(),
        None => Some(ran.await),
    };
    let Some((status, (stdout, stdout_truncated))) = ran else {
        process.kill().await;
        let program = spec.command.first().cloned().unwrap_or_default();
        return Err(RunError::Timeout { pid, program, after: timeout.unwrap_or_default() });
    };
    let usage = process.usage();
    Ok(Completed { pid, status, stdout, stdout_truncated, stderr, usage })
}

/// All of stdout up to the cap; whether more was dropped.
async fn read_capped(mut stdout: ChildStdout) -> (Vec<u8>, bool) {
    let mut kept = Vec::new();
    let mut chunk = vec![0; READ_CHUNK];
    let mut truncated = false;
    loop {
        match stdout.read(&mut chunk).await {
            Ok(0) | Err(_) => return (kept, truncated),
            Ok(n) => {
                let room = OUTPUT_CAP - kept.len();
                kept.extend_from_slice(&chunk[..n.min(room)]);
                truncated |= n > room;
            }
        }
    }
}
