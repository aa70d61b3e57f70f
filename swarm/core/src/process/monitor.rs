//! The monitor: the only task that signals a child's process group or reaps
//! its leader (see the module doc of `process`).

use std::os::fd::OwnedFd;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rustix::io::Errno;
use rustix::process::{Pid, PidfdFlags, Signal, WaitId, WaitIdOptions};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::sync::{mpsc, watch};

use super::capture::Usage;
use super::exit::describe_exit;
use super::watcher;

/// How often to look for the leader's exit where pidfds are unavailable.
const EXIT_POLL: Duration = Duration::from_millis(20);

/// A pidfd registered with the current runtime, or `None` where the kernel has none.
pub(super) fn open_pidfd(pid: Pid) -> Option<AsyncFd<OwnedFd>> {
    match rustix::process::pidfd_open(pid, PidfdFlags::empty()) {
        // SAFETY: the OwnedFd moves into the AsyncFd, keeps the descriptor open and
        // always reports the same one until the AsyncFd is dropped.
        Ok(fd) => unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }.ok(),
        Err(error) => {
            tracing::debug!(pid = pid.as_raw_nonzero().get(), %error, "no pidfd; polling for the child's exit");
            None
        }
    }
}

/// Watches one group until its leader exited, sending the signals asked for
/// meanwhile; then kills what is left of the group and reaps the leader.
pub(super) async fn monitor(
    pid: Pid,
    pidfd: Option<AsyncFd<OwnedFd>>,
    mut signals: mpsc::UnboundedReceiver<Signal>,
    status: watch::Sender<Option<ExitStatus>>,
    usage: Arc<OnceLock<Usage>>,
) {
    let mut group = Group { pid, leader_unreaped: true, usage };
    let exit = leader_exit(pid, pidfd);
    tokio::pin!(exit);
    let mut owner_alive = true;
    let leader = loop {
        tokio::select! {
            leader = &mut exit => break leader,
            signal = signals.recv(), if owner_alive => match signal {
                Some(signal) => group.signal(signal),
                None => {
                    owner_alive = false;
                    group.signal(Signal::KILL);
                }
            },
        }
    };
    let exit_status = match leader {
        Leader::Exited => {
            // The zombie leader still holds the group id: sweep its group now.
            group.signal(Signal::KILL);
            group.reap()
        }
        Leader::Running | Leader::Gone => {
            group.leader_unreaped = false;
            watcher::unregister(pid);
            None
        }
    };
    let exit_status = exit_status.unwrap_or_else(|| {
        // Something else in this process reaped our child (a waitpid(-1)); the
        // status is lost and the group id may be recycled, so no sweep.
        tracing::warn!("child was reaped by someone else; its exit status is unknown");
        ExitStatus::from_raw(Signal::KILL.as_raw())
    });
    tracing::debug!(status = %describe_exit(exit_status), "child exited");
    status.send_replace(Some(exit_status));
}

/// A child's process group while its leader may be unreaped. Dropping it
/// (the runtime shut down under the monitor) kills the group.
struct Group {
    pid: Pid,
    leader_unreaped: bool,
    /// Filled by the reap with the leader's (and its waited-for descendants') resource usage.
    usage: Arc<OnceLock<Usage>>,
}

impl Group {
    fn signal(&self, signal: Signal) {
        if self.leader_unreaped {
            // With the leader unreaped the group id is still ours.
            let _ = rustix::process::kill_process_group(self.pid, signal);
        }
    }

    /// Reaps the exited leader, after the watcher forgot its group: once
    /// reaped, the id may name someone else's group. `wait4` rather than
    /// `waitpid`: the reap is the only moment the kernel hands over the
    /// child's own rusage (rustix has no `wait4`).
    fn reap(&mut self) -> Option<ExitStatus> {
        watcher::unregister(self.pid);
        self.leader_unreaped = false;
        let pid = self.pid.as_raw_nonzero().get();
        loop {
            let mut status: libc::c_int = 0;
            // SAFETY: an all-zero rusage is a valid value of the plain C struct.
            let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
            // SAFETY: wait4 writes only to the two locals passed by pointer.
            let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
            if reaped == pid {
                let _ = self.usage.set(Usage::from_rusage(&usage));
                return Some(ExitStatus::from_raw(status));
            }
            if reaped < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return None;
        }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        if self.leader_unreaped {
            self.signal(Signal::KILL);
            watcher::unregister(self.pid);
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Leader {
    Running,
    /// Exited, not yet reaped.
    Exited,
    /// Not our child any more: reaped behind our back.
    Gone,
}

async fn leader_exit(pid: Pid, pidfd: Option<AsyncFd<OwnedFd>>) -> Leader {
    loop {
        match peek(pid) {
            Leader::Running => {}
            done => return done,
        }
        match &pidfd {
            Some(fd) => match fd.readable().await {
                // Clearing first is safe: the peek that follows is what decides,
                // and an exit after it makes the pidfd readable again.
                Ok(mut ready) => ready.clear_ready(),
                Err(_) => tokio::time::sleep(EXIT_POLL).await,
            },
            None => tokio::time::sleep(EXIT_POLL).await,
        }
    }
}

/// Whether the leader has exited, without reaping it.
fn peek(pid: Pid) -> Leader {
    let options = WaitIdOptions::EXITED | WaitIdOptions::NOHANG | WaitIdOptions::NOWAIT;
    loop {
        match rustix::process::waitid(WaitId::Pid(pid), options) {
            Ok(Some(_)) => return Leader::Exited,
            Ok(None) => return Leader::Running,
            Err(Errno::INTR) => {}
            Err(_) => return Leader::Gone,
        }
    }
}
