//! Starting a daemon detached from whoever asked for it: its own session (no
//! terminal, no job-control signals), stdin and stdout on /dev/null, stderr
//! appended to its log (where a panic would land), and reparented to init by
//! a double fork, so the caller that started it never has to reap it.

use std::path::Path;
use std::process::{Command, Stdio};

/// Spawns `command` detached; returns once it has been exec'd (an exec failure is returned).
pub fn spawn_detached(mut command: Command, log: &Path) -> std::io::Result<()> {
    if let Some(dir) = log.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let stderr = std::fs::OpenOptions::new().create(true).append(true).open(log)?;
    command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(stderr);
    use std::os::unix::process::CommandExt;
    // SAFETY: between fork and exec only async-signal-safe calls are made
    // (setsid, fork, _exit), and nothing is allocated.
    unsafe {
        command.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            match libc::fork() {
                -1 => Err(std::io::Error::last_os_error()),
                // The grandchild goes on to exec; the child we were forked as exits at once.
                0 => Ok(()),
                _ => libc::_exit(0),
            }
        });
    }
    let mut intermediate = command.spawn()?;
    intermediate.wait()?;
    Ok(())
}
