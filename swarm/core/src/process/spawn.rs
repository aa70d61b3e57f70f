//! Forking: the long-lived spawner thread and what a child does between
//! `fork` and `exec` (see the module doc of `process` for why).

use std::io;
use std::os::unix::process::CommandExt;
use std::panic::AssertUnwindSafe;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, PoisonError, mpsc as std_mpsc};

use rustix::process::{Pid, Signal};
use tokio::sync::oneshot;

use super::SpawnSpec;
use super::rlimits::Plan;
use super::watcher::{self, Registration};

/// A ready command: argv, cwd, the cleared and rebuilt environment, piped
/// stdio, its own process group, and the limits the child sets.
pub(super) fn command_for(spec: &SpawnSpec, program: &str) -> Ready {
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
    Ready { command, limits: spec.rlimits.plan() }
}

/// A command ready for the spawner thread, with the limits its child sets.
pub(super) struct Ready {
    pub command: Command,
    pub limits: Plan,
}

/// Adds the between-fork-and-exec steps; `watcher` is where the child
/// registers its group before it can start anything of its own.
fn arm(command: &mut Command, limits: Plan, watcher: Option<Registration>) {
    // The spawner thread forks, but getpid() names the process, which is what
    // the child's getppid() reports while we live.
    let parent = rustix::process::getpid();
    let in_child = move || {
        rustix::process::set_parent_process_death_signal(Some(Signal::KILL))?;
        if rustix::process::getppid() != Some(parent) {
            // SAFETY: _exit ends the forked child without running any of our destructors.
            unsafe { libc::_exit(1) }
        }
        if let Some(watcher) = &watcher {
            // Before exec, so a grandchild cannot exist yet in an unregistered group.
            watcher.register(rustix::process::getpid());
        }
        limits.apply()
    };
    // SAFETY: `in_child` runs between fork and exec and only makes raw system
    // calls through rustix (prctl, getppid, getpid, send, getrlimit, setrlimit) or _exit; it
    // allocates nothing and takes no lock.
    unsafe { command.pre_exec(in_child) };
}

struct SpawnRequest {
    command: Command,
    limits: Plan,
    reply: oneshot::Sender<io::Result<Child>>,
}

/// The spawner thread's inbox. Its sender is never dropped, so the thread,
/// whose exit would SIGKILL every child, lives as long as the process.
static SPAWNER: Mutex<Option<std_mpsc::Sender<SpawnRequest>>> = Mutex::new(None);

/// Forks `command` on the spawner thread.
pub(super) async fn spawn_on_spawner_thread(ready: Ready) -> io::Result<Child> {
    let gone = || io::Error::other("the spawner thread is gone");
    let (reply, child) = oneshot::channel();
    let Ready { command, limits } = ready;
    spawner()?.send(SpawnRequest { command, limits, reply }).map_err(|_| gone())?;
    child.await.map_err(|_| gone())?
}

fn spawner() -> io::Result<std_mpsc::Sender<SpawnRequest>> {
    let mut slot = SPAWNER.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(sender) = slot.as_ref() {
        return Ok(sender.clone());
    }
    let (sender, requests) = std_mpsc::channel::<SpawnRequest>();
    std::thread::Builder::new().name("skep-spawner".into()).spawn(move || {
        for SpawnRequest { mut command, limits, reply } in requests {
            arm(&mut command, limits, watcher::registration());
            // A panic must not end this thread: its exit would SIGKILL every child.
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
    let pid = Pid::from_child(&child);
    // The leader is unreaped, so the group id is still ours.
    let _ = rustix::process::kill_process_group(pid, Signal::KILL);
    watcher::unregister(pid);
    let _ = child.wait();
}
