//! The handle on a running child: its pipes, its exit, the stop ladder, and
//! the guard (dropping the handle kills the group).

use std::io;
use std::process::ExitStatus;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rustix::process::{Pid, Signal};
use tokio::process::{ChildStderr, ChildStdin, ChildStdout};
use tokio::sync::{mpsc, watch};
use tracing::Instrument;

use super::capture::Usage;
use super::monitor::{monitor, open_pidfd};
use super::spawn::{command_for, spawn_on_spawner_thread};
use super::{SpawnError, SpawnSpec};
use crate::stderr_ring::{self, StderrTail};

/// How a stop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopOutcome {
    /// The child exited within the grace period after stdin was closed.
    ExitedOnEof(ExitStatus),
    /// The child exited after SIGTERM to its group.
    Terminated(ExitStatus),
    /// The child had to be killed with SIGKILL.
    Killed(ExitStatus),
    /// The child had already exited when the stop began.
    AlreadyExited(ExitStatus),
}

impl StopOutcome {
    /// The exit status, however the stop ended.
    pub fn status(self) -> ExitStatus {
        match self {
            Self::ExitedOnEof(s) | Self::Terminated(s) | Self::Killed(s) | Self::AlreadyExited(s) => s,
        }
    }
}

/// A running child process in its own process group. Dropping it kills the group (SIGKILL) if still running.
#[derive(Debug)]
pub struct ChildProcess {
    pid: u32,
    stdin: Option<ChildStdin>,
    stdout: Option<ChildStdout>,
    stderr: StderrTail,
    status: watch::Receiver<Option<ExitStatus>>,
    /// Signals for the monitor to send to the group; closing it means SIGKILL.
    signals: mpsc::UnboundedSender<Signal>,
    /// Set by the monitor when it reaps the leader.
    usage: Arc<OnceLock<Usage>>,
}

impl ChildProcess {
    /// Spawns via the dedicated spawner thread (pdeathsig, new process group, cleared env, stderr drained).
    pub async fn spawn(spec: &SpawnSpec) -> Result<ChildProcess, SpawnError> {
        let Some(program) = spec.command.first() else {
            return Err(SpawnError::EmptyCommand { role: spec.role.clone() });
        };
        let spawn_error = |source| SpawnError::Spawn { role: spec.role.clone(), command: program.clone(), source };
        let mut child = spawn_on_spawner_thread(command_for(spec, program)).await.map_err(spawn_error)?;
        let pid = Pid::from_child(&child);
        let pipes = (child.stdin.take(), child.stdout.take(), child.stderr.take());
        // Dropping std's Child neither waits nor kills: the monitor owns the pid from here.
        drop(child);

        let (signals, signal_rx) = mpsc::unbounded_channel();
        let (status_tx, status) = watch::channel(None);
        let raw_pid = pid.as_raw_nonzero().get() as u32;
        let span = tracing::info_span!("child", role = %spec.role, pid = raw_pid);
        let pidfd = open_pidfd(pid);
        let usage = Arc::new(OnceLock::new());
        tokio::spawn(monitor(pid, pidfd, signal_rx, status_tx, usage.clone()).instrument(span));
        // From here an early return drops `signals`, so the monitor kills and reaps the group.
        let (stdin, stdout, stderr) = match pipes {
            (Some(stdin), Some(stdout), Some(stderr)) => (stdin, stdout, stderr),
            _ => return Err(spawn_error(io::Error::other("child pipes were not set up"))),
        };
        let stdin = ChildStdin::from_std(stdin).map_err(spawn_error)?;
        let stdout = ChildStdout::from_std(stdout).map_err(spawn_error)?;
        let stderr = ChildStderr::from_std(stderr).map_err(spawn_error)?;
        let stderr = stderr_ring::spawn_drain(stderr, spec.role.clone(), raw_pid);
        tracing::debug!(role = %spec.role, pid = raw_pid, "child spawned");
        Ok(ChildProcess { pid: raw_pid, stdin: Some(stdin), stdout: Some(stdout), stderr, status, signals, usage })
    }

    /// The child's process id, which is also its process group id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The CPU time and peak RSS the kernel accounted to the child, once it has been reaped.
    pub(super) fn usage(&self) -> Option<Usage> {
        self.usage.get().copied()
    }

    /// The child's stdin/stdout pipes, taken once by the connection layer.
    pub fn take_stdio(&mut self) -> Option<(ChildStdin, ChildStdout)> {
        match (self.stdin.take(), self.stdout.take()) {
            (Some(stdin), Some(stdout)) => Some((stdin, stdout)),
            (stdin, stdout) => {
                (self.stdin, self.stdout) = (stdin, stdout);
                None
            }
        }
    }

    /// The last lines of stderr (up to `max_bytes` from the ring), lossy UTF-8.
    pub fn stderr_tail(&self, max_bytes: usize) -> String {
        self.stderr.tail(max_bytes)
    }

    /// A handle on the stderr ring that outlives this value.
    pub fn stderr_handle(&self) -> StderrTail {
        self.stderr.clone()
    }

    /// Resolves when the process has exited (does not reap twice; can be awaited from a select! repeatedly: cancel-safe).
    ///
    /// Never resolves if the runtime that spawned the child has shut down
    /// (its monitor task is gone; it SIGKILLed the group as it went).
    pub async fn exited(&mut self) -> ExitStatus {
        match self.status.wait_for(Option::is_some).await.map(|status| *status) {
            Ok(Some(status)) => status,
            _ => std::future::pending().await,
        }
    }

    /// The exit status if the process has exited and been reaped.
    pub fn try_exited(&mut self) -> Option<ExitStatus> {
        *self.status.borrow()
    }

    /// SIGKILLs the whole group now and waits until the leader is reaped.
    pub async fn kill(mut self) -> ExitStatus {
        // A failed send means the monitor is gone, and it killed the group as it went.
        let _ = self.signals.send(Signal::KILL);
        self.exited().await
    }

    /// The stop ladder: close stdin → wait `grace` → SIGTERM to the group →
    /// wait `grace` → SIGKILL to the group; then reap. Returns how it ended.
    ///
    /// Only stdin held here is closed: a connection layer that took the pipes
    /// must drop its `ChildStdin` before calling this, or the first rung is just
    /// a wait. stdout stays open until the end so that a child writing a last
    /// line on its way out is not killed by SIGPIPE.
    pub async fn stop(mut self, grace: Duration) -> StopOutcome {
        if let Some(status) = self.try_exited() {
            return StopOutcome::AlreadyExited(status);
        }
        self.stdin = None;
        if let Ok(status) = tokio::time::timeout(grace, self.exited()).await {
            return StopOutcome::ExitedOnEof(status);
        }
        tracing::debug!(pid = self.pid, "child ignored stdin EOF; sending SIGTERM to its group");
        // A failed send means the monitor is gone, and it killed the group as it went.
        let _ = self.signals.send(Signal::TERM);
        if let Ok(status) = tokio::time::timeout(grace, self.exited()).await {
            return StopOutcome::Terminated(status);
        }
        tracing::debug!(pid = self.pid, "child ignored SIGTERM; sending SIGKILL to its group");
        let _ = self.signals.send(Signal::KILL);
        StopOutcome::Killed(self.exited().await)
    }
}
