//! Agent processes: spawn, watch, stop, and leave nothing behind.
//!
//! - **One spawner thread.** `PR_SET_PDEATHSIG` fires when the *thread* that
//!   forked the child exits, not the process, and tokio's worker and blocking
//!   threads come and go. So every fork happens on one thread that lives as long
//!   as the process; callers send it a ready `std::process::Command` and get the
//!   `Child` back over a oneshot. In the child, `pre_exec` sets the parent-death
//!   signal and then compares `getppid()` with the pid taken before the fork: if
//!   we died in between, no signal will ever come, so the child leaves.
//! - **std's `Command`, not tokio's.** We must be the child's only reaper (next
//!   point), and tokio's `Child` reaps on its own. The pipes are turned into tokio
//!   types with `from_std` in the caller's task, which registers them with the
//!   caller's runtime, so the spawner thread needs no runtime at all.
//! - **One process group per agent, one monitor task per group.** The agent
//!   leads a new group (`process_group(0)`). Its monitor task is the only one
//!   that signals the group or reaps the leader: it sleeps on a pidfd, which
//!   becomes readable when the leader exits *without reaping it* (`waitid` with
//!   `WNOWAIT` confirms; where pidfds are unavailable it polls that `waitid`).
//!   While the leader is an unreaped zombie its pid, hence the group id, cannot
//!   be recycled, so the monitor first SIGKILLs the group (a grandchild holding
//!   stdout open dies too), then reaps. Signals asked for by `stop` or by drop go
//!   through the same task, so no signal can race the reap. Death is known from
//!   the exit status, never from EOF on stdout.
//! - **stderr is always drained** into a bounded ring (`stderr_ring`).

use std::collections::BTreeMap;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, PoisonError, mpsc as std_mpsc};
use std::time::Duration;

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::process::{ChildStdin, ChildStdout};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::Instrument;

use crate::stderr_ring::{self, StderrTail};

/// How often to look for the leader's exit where pidfds are unavailable.
const EXIT_POLL: Duration = Duration::from_millis(20);

/// What to start: argv, cwd, environment.
#[derive(Debug, Clone)]
pub struct SpawnSpec {
    /// The role this agent serves; tags logs and errors.
    pub role: String,
    /// Program and arguments, executed directly (never through a shell).
    pub command: Vec<String>,
    /// Working directory; ours when `None`.
    pub cwd: Option<PathBuf>,
    /// The role's own variables; they win over passed-through ones.
    pub env: BTreeMap<String, String>,
    /// Names of our variables copied to the agent when set; nothing else is inherited.
    pub env_passthrough: Vec<String>,
}

/// A failure to start an agent.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpawnError {
    /// The program could not be started (not found, not executable, ...).
    #[error("cannot start {command:?} for role {role}")]
    Spawn {
        /// The role being started.
        role: String,
        /// The program (argv\[0\]); arguments are left out as they may hold secrets.
        command: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The role's command is empty.
    #[error("empty command for role {role}")]
    EmptyCommand {
        /// The role being started.
        role: String,
    },
}

/// How a stop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopOutcome {
    /// The agent exited within the grace period after stdin was closed.
    ExitedOnEof(ExitStatus),
    /// The agent exited after SIGTERM to its group.
    Terminated(ExitStatus),
    /// The agent had to be killed with SIGKILL.
    Killed(ExitStatus),
    /// The agent had already exited when the stop began.
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

/// A running agent process in its own process group. Dropping it kills the group (SIGKILL) if still running.
#[derive(Debug)]
pub struct AgentProcess {
    pid: u32,
    stdin: Option<ChildStdin>,
    stdout: Option<ChildStdout>,
    stderr: StderrTail,
    status: watch::Receiver<Option<ExitStatus>>,
    /// Signals for the monitor to send to the group; closing it means SIGKILL.
    signals: mpsc::UnboundedSender<libc::c_int>,
}

impl AgentProcess {
    /// Spawns via the dedicated spawner thread (pdeathsig, new process group, cleared env, stderr drained).
    pub async fn spawn(spec: &SpawnSpec) -> Result<AgentProcess, SpawnError> {
        let Some(program) = spec.command.first() else {
            return Err(SpawnError::EmptyCommand { role: spec.role.clone() });
        };
        let spawn_error = |source| SpawnError::Spawn { role: spec.role.clone(), command: program.clone(), source };
        let mut child = spawn_on_spawner_thread(command_for(spec, program)).await.map_err(spawn_error)?;
        let pid = child.id();
        let pipes = (child.stdin.take(), child.stdout.take(), child.stderr.take());
        // Dropping std's Child neither waits nor kills: the monitor owns the pid from here.
        drop(child);

        let (signals, signal_rx) = mpsc::unbounded_channel();
        let (status_tx, status) = watch::channel(None);
        let span = tracing::info_span!("agent", role = %spec.role, pid);
        let pidfd = open_pidfd(pid);
        tokio::spawn(monitor(pid, pidfd, signal_rx, status_tx).instrument(span));
        // From here an early return drops `signals`, so the monitor kills and reaps the group.
        let (stdin, stdout, stderr) = match pipes {
            (Some(stdin), Some(stdout), Some(stderr)) => (stdin, stdout, stderr),
            _ => return Err(spawn_error(io::Error::other("child pipes were not set up"))),
        };
        let stdin = ChildStdin::from_std(stdin).map_err(spawn_error)?;
        let stdout = ChildStdout::from_std(stdout).map_err(spawn_error)?;
        let stderr = tokio::process::ChildStderr::from_std(stderr).map_err(spawn_error)?;
        let stderr = stderr_ring::spawn_drain(stderr, spec.role.clone(), pid);
        tracing::debug!(role = %spec.role, pid, "agent spawned");
        Ok(AgentProcess { pid, stdin: Some(stdin), stdout: Some(stdout), stderr, status, signals })
    }

    /// The agent's process id, which is also its process group id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The agent's stdin/stdout pipes, taken once by the connection layer.
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
    /// Never resolves if the runtime that spawned the agent has shut down
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

    /// The stop ladder: close stdin → wait `grace` → SIGTERM to the group →
    /// wait `grace` → SIGKILL to the group; then reap. Returns how it ended.
    ///
    /// Only stdin held here is closed: a connection layer that took the pipes
    /// must drop its `ChildStdin` before calling this, or the first rung is just
    /// a wait. stdout stays open until the end so that an agent writing a last
    /// line on its way out is not killed by SIGPIPE.
    pub async fn stop(mut self, grace: Duration) -> StopOutcome {
        if let Some(status) = self.try_exited() {
            return StopOutcome::AlreadyExited(status);
        }
        self.stdin = None;
        if let Ok(status) = tokio::time::timeout(grace, self.exited()).await {
            return StopOutcome::ExitedOnEof(status);
        }
        tracing::debug!(pid = self.pid, "agent ignored stdin EOF; sending SIGTERM to its group");
        // A failed send means the monitor is gone, and it killed the group as it went.
        let _ = self.signals.send(libc::SIGTERM);
        if let Ok(status) = tokio::time::timeout(grace, self.exited()).await {
            return StopOutcome::Terminated(status);
        }
        tracing::debug!(pid = self.pid, "agent ignored SIGTERM; sending SIGKILL to its group");
        let _ = self.signals.send(libc::SIGKILL);
        StopOutcome::Killed(self.exited().await)
    }
}

/// Renders an exit status for people: "exit code 3", "killed by SIGKILL".
pub fn describe_exit(status: ExitStatus) -> String {
    if let Some(code) = status.code() {
        return format!("exit code {code}");
    }
    match status.signal() {
        Some(signal) => {
            let core = if status.core_dumped() { " (core dumped)" } else { "" };
            format!("killed by {}{core}", signal_name(signal))
        }
        None => status.to_string(),
    }
}

fn signal_name(signal: libc::c_int) -> String {
    let name = match signal {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGXCPU => "SIGXCPU",
        libc::SIGXFSZ => "SIGXFSZ",
        libc::SIGSYS => "SIGSYS",
        _ => return format!("signal {signal}"),
    };
    name.to_owned()
}

fn command_for(spec: &SpawnSpec, program: &str) -> Command {
    let mut command = Command::new(program);
    command.args(&spec.command[1..]);
    if let Some(cwd) = &spec.cwd {
        command.current_dir(cwd);
    }
    command.env_clear();
    for name in &spec.env_passthrough {
        if let Some(value) = std::env::var_os(name) {
            command.env(name, value);
        }
    }
    command.envs(&spec.env);
    command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    command.process_group(0);
    // The spawner thread forks, but getpid() names the process, which is what
    // the child's getppid() reports while we live.
    let parent = std::process::id() as libc::pid_t;
    let in_child = move || {
        // SAFETY: PR_SET_PDEATHSIG takes a signal number and touches no memory of ours.
        if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: getppid cannot fail and touches no memory.
        if unsafe { libc::getppid() } != parent {
            // SAFETY: _exit ends the forked child without running any of our destructors.
            unsafe { libc::_exit(1) }
        }
        Ok(())
    };
    // SAFETY: `in_child` runs between fork and exec and only calls
    // async-signal-safe functions (prctl, getppid, _exit); it allocates nothing.
    unsafe { command.pre_exec(in_child) };
    command
}

struct SpawnRequest {
    command: Command,
    reply: oneshot::Sender<io::Result<Child>>,
}

/// The spawner thread's inbox. Its sender is never dropped, so the thread,
/// whose exit would SIGKILL every agent, lives as long as the process.
static SPAWNER: Mutex<Option<std_mpsc::Sender<SpawnRequest>>> = Mutex::new(None);

async fn spawn_on_spawner_thread(command: Command) -> io::Result<Child> {
    let gone = || io::Error::other("the spawner thread is gone");
    let (reply, child) = oneshot::channel();
    spawner()?.send(SpawnRequest { command, reply }).map_err(|_| gone())?;
    child.await.map_err(|_| gone())?
}

fn spawner() -> io::Result<std_mpsc::Sender<SpawnRequest>> {
    let mut slot = SPAWNER.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(sender) = slot.as_ref() {
        return Ok(sender.clone());
    }
    let (sender, requests) = std_mpsc::channel::<SpawnRequest>();
    std::thread::Builder::new().name("skep-spawner".into()).spawn(move || {
        for SpawnRequest { mut command, reply } in requests {
            // A panic must not end this thread: its exit would SIGKILL every agent.
            let spawned = std::panic::catch_unwind(AssertUnwindSafe(|| command.spawn()))
                .unwrap_or_else(|_| Err(io::Error::other("spawning panicked")));
            if let Err(Ok(child)) = reply.send(spawned) {
                // The caller gave up while we forked: nobody will supervise this child.
                discard(child);
            }
        }
    })?;
    *slot = Some(sender.clone());
    Ok(sender)
}

/// Kills and reaps a child nobody wants, on the spawner thread (fast after SIGKILL).
fn discard(mut child: Child) {
    // SAFETY: kill has no memory effects; the leader is unreaped, so the group id is still ours.
    unsafe { libc::kill(-(child.id() as libc::pid_t), libc::SIGKILL) };
    let _ = child.wait();
}

fn open_pidfd(pid: u32) -> Option<AsyncFd<OwnedFd>> {
    let flags: libc::c_long = 0;
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, libc::c_long::from(pid), flags) };
    if fd < 0 {
        let error = io::Error::last_os_error();
        tracing::debug!(pid, %error, "no pidfd; polling for the agent's exit");
        return None;
    }
    // SAFETY: the descriptor was just created and nothing else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) };
    // SAFETY: the OwnedFd moves into the AsyncFd, keeps the descriptor open and
    // always reports the same one until the AsyncFd is dropped.
    unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }.ok()
}

/// The only signaller and reaper of one agent's group; see the module doc.
async fn monitor(
    pid: u32,
    pidfd: Option<AsyncFd<OwnedFd>>,
    mut signals: mpsc::UnboundedReceiver<libc::c_int>,
    status: watch::Sender<Option<ExitStatus>>,
) {
    let mut group = Group { pid: pid as libc::pid_t, leader_unreaped: true };
    let exit = leader_exit(group.pid, pidfd);
    tokio::pin!(exit);
    let mut owner_alive = true;
    let leader = loop {
        tokio::select! {
            leader = &mut exit => break leader,
            signal = signals.recv(), if owner_alive => match signal {
                Some(signal) => group.signal(signal),
                None => {
                    owner_alive = false;
                    group.signal(libc::SIGKILL);
                }
            },
        }
    };
    let exit_status = match leader {
        Leader::Exited => {
            // The zombie leader still holds the group id: sweep its group now.
            group.signal(libc::SIGKILL);
            group.reap()
        }
        Leader::Running | Leader::Gone => None,
    };
    group.leader_unreaped = false;
    let exit_status = exit_status.unwrap_or_else(|| {
        // Something else in this process reaped our child (a waitpid(-1)); the
        // status is lost and the group id may be recycled, so no sweep.
        tracing::warn!("agent was reaped by someone else; its exit status is unknown");
        ExitStatus::from_raw(libc::SIGKILL)
    });
    tracing::debug!(status = %describe_exit(exit_status), "agent exited");
    status.send_replace(Some(exit_status));
}

/// An agent's process group while its leader may be unreaped. Dropping it
/// (the runtime shut down under the monitor) kills the group.
struct Group {
    pid: libc::pid_t,
    leader_unreaped: bool,
}

impl Group {
    fn signal(&self, signal: libc::c_int) {
        if self.leader_unreaped {
            // SAFETY: kill has no memory effects; with the leader unreaped the group id is still ours.
            unsafe { libc::kill(-self.pid, signal) };
        }
    }

    fn reap(&mut self) -> Option<ExitStatus> {
        let mut raw = 0;
        loop {
            // SAFETY: raw is a valid out-pointer; the leader has exited, so this returns at once.
            let reaped = unsafe { libc::waitpid(self.pid, &mut raw, 0) };
            if reaped == self.pid {
                self.leader_unreaped = false;
                return Some(ExitStatus::from_raw(raw));
            }
            if io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
                self.leader_unreaped = false;
                return None;
            }
        }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.signal(libc::SIGKILL);
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

async fn leader_exit(pid: libc::pid_t, pidfd: Option<AsyncFd<OwnedFd>>) -> Leader {
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
fn peek(pid: libc::pid_t) -> Leader {
    loop {
        // SAFETY: siginfo_t is plain data for which all zeroes is a valid value.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let flags = libc::WEXITED | libc::WNOHANG | libc::WNOWAIT;
        // SAFETY: info is a valid out-pointer; WNOWAIT leaves the child reapable.
        if unsafe { libc::waitid(libc::P_PID, pid as libc::id_t, &mut info, flags) } == 0 {
            // SAFETY: waitid filled info, or left it zeroed (si_pid 0) if nothing exited.
            let exited = unsafe { info.si_pid() } != 0;
            return if exited { Leader::Exited } else { Leader::Running };
        }
        if io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            return Leader::Gone;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_exits_for_people() {
        assert_eq!(describe_exit(ExitStatus::from_raw(3 << 8)), "exit code 3");
        assert_eq!(describe_exit(ExitStatus::from_raw(libc::SIGKILL)), "killed by SIGKILL");
        assert_eq!(describe_exit(ExitStatus::from_raw(libc::SIGSEGV | 0x80)), "killed by SIGSEGV (core dumped)");
        assert_eq!(describe_exit(ExitStatus::from_raw(40)), "killed by signal 40");
    }
}
