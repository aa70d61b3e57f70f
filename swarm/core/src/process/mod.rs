//! The one process runner: every child skep starts (agents, command roles,
//! workflow command steps) is spawned, watched, stopped and reaped here.
//!
//! - **One spawner thread** (`spawn.rs`). `PR_SET_PDEATHSIG` fires when the
//!   *thread* that forked the child exits, not the process, and tokio's worker
//!   and blocking threads come and go. So every fork happens on one thread
//!   that lives as long as the process; callers send it a ready
//!   `std::process::Command` and get the `Child` back over a oneshot. In the
//!   child, `pre_exec` sets the parent-death signal and then compares
//!   `getppid()` with the pid taken before the fork: if we died in between, no
//!   signal will ever come, so the child leaves.
//! - **std's `Command`, not tokio's.** We must be the child's only reaper (next
//!   point), and tokio's `Child` reaps on its own. The pipes are turned into
//!   tokio types with `from_std` in the caller's task, which registers them
//!   with the caller's runtime, so the spawner thread needs no runtime at all.
//! - **One process group per child, one monitor task per group**
//!   (`monitor.rs`). The child leads a new group (`process_group(0)`). Its
//!   monitor task is the only one that signals the group or reaps the leader:
//!   it sleeps on a pidfd, which becomes readable when the leader exits
//!   *without reaping it* (`waitid` with `WNOWAIT` confirms; where pidfds are
//!   unavailable it polls that `waitid`). While the leader is an unreaped
//!   zombie its pid, hence the group id, cannot be recycled, so the monitor
//!   first SIGKILLs the group (a grandchild holding stdout open dies too), then
//!   reaps. Signals asked for by `stop` or by drop go through the same task, so
//!   no signal can race the reap. Death is known from the exit status, never
//!   from EOF on stdout.
//! - **The handle is the guard** (`child.rs`). Dropping a [`ChildProcess`]
//!   SIGKILLs its group through the monitor; the stop ladder is its `stop`.
//! - **Nothing outlives us** (`watcher.rs`). The parent-death signal reaches
//!   the leader only; a watcher process, forked once, kills every registered
//!   group when our end of its socket closes, however we died.
//! - **Kernel limits** (`rlimits.rs`): a role's `rlimits` are set in the
//!   child between fork and exec, after the parent-death checks.
//! - **Environment** is cleared and rebuilt from an allow-list
//!   ([`SpawnSpec::env_passthrough`]) plus the spec's own variables.
//! - **Output is bounded** (`capture.rs`, `stderr_ring`): stdout of a
//!   run-to-completion child is kept up to `capture::OUTPUT_CAP` (16 MiB), stderr of
//!   every child drains into a 64 KiB ring.
//!
//! System calls go through `rustix` rather than `nix` or raw `libc`: its
//! Linux backend issues the syscalls itself (no `errno`, no allocation), which
//! is what code between `fork` and `exec` and the forked watcher may run, and
//! it covers `pidfd_open` and `waitid(WNOWAIT)`, which `nix` does not. `libc`
//! remains for `fork`, `_exit` and `signal` in the watcher and for `wait4` in
//! the monitor's reap (the child's rusage; rustix has no `wait4`), each under a
//! `SAFETY:` comment.

mod capture;
mod child;
mod exit;
mod monitor;
mod rlimits;
mod spawn;
mod watcher;

use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;

pub use capture::{Completed, RunError, Usage, run_to_completion};
pub use child::{ChildProcess, StopOutcome};
pub use exit::describe_exit;
pub use rlimits::Rlimits;

/// What to start: argv, cwd, environment, kernel limits.
#[derive(Debug, Clone, Default)]
pub struct SpawnSpec {
    /// The role (or workflow step) this process serves; tags logs and errors.
    pub role: String,
    /// Program and arguments, executed directly (never through a shell).
    pub command: Vec<String>,
    /// Working directory; ours when `None`.
    pub cwd: Option<PathBuf>,
    /// The role's own variables; they win over passed-through ones.
    pub env: BTreeMap<String, String>,
    /// Names of our variables copied to the child when set; nothing else is inherited.
    pub env_passthrough: Vec<String>,
    /// Kernel limits set in the child before exec; inherited by all it starts.
    pub rlimits: Rlimits,
}

/// A failure to start a process.
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

impl SpawnError {
    /// The message with the operating system's reason appended, for reports
    /// that reach a caller who cannot see our logs ("... : No such file or directory").
    pub fn with_reason(&self) -> String {
        match self {
            SpawnError::Spawn { source, .. } => format!("{self}: {source}"),
            SpawnError::EmptyCommand { .. } => self.to_string(),
        }
    }
}
