//! The group watcher: a process forked once per orchestrator that SIGKILLs
//! every registered process group when the orchestrator dies, however it dies.
//!
//! The parent-death signal reaches only the group leaders we forked; a child
//! or grandchild an agent started lives on without this. The watcher holds one
//! end of a `SOCK_SEQPACKET` socket pair; each child registers its own group
//! (`+pid`) between fork and exec, so nothing it starts can predate the
//! registration, and the monitor unregisters it (`-pid`) after it SIGKILLed
//! the group and before it reaps the leader: until that reap the group id
//! cannot be recycled, and after it the watcher no longer knows the id. When
//! our end closes (we exited or were killed) the watcher reads what is left,
//! kills every group still registered and exits.
//!
//! After `fork` in a multi-threaded process only async-signal-safe calls are
//! allowed: the table is allocated before the fork, and the child makes only
//! raw system calls (rustix) and `_exit`. It ignores SIGINT, SIGTERM and
//! SIGHUP and leaves the terminal's process group, so a Ctrl-C or a closed
//! terminal that kills us leaves it alive to clean up after us.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::sync::OnceLock;

use rustix::io::Errno;
use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType};
use rustix::process::{Pid, Signal};

/// Groups the watcher can hold at once; registrations past it are dropped
/// (those groups then rely on the parent-death signal alone).
const CAPACITY: usize = 1 << 16;
const REGISTER: u8 = b'+';
const UNREGISTER: u8 = b'-';

/// Our end of the watcher's socket. Never closed while we live: its closing is the signal.
#[derive(Debug)]
struct Watcher {
    socket: OwnedFd,
}

static WATCHER: OnceLock<Option<Watcher>> = OnceLock::new();

/// What a freshly forked child needs to register its own group.
#[derive(Debug, Clone, Copy)]
pub(super) struct Registration(&'static Watcher);

impl Registration {
    /// Registers group `pid`; safe between fork and exec (one `send`, no allocation).
    pub(super) fn register(&self, pid: Pid) {
        self.0.send(REGISTER, pid);
    }
}

/// The watcher, started on first use; `None` if it could not be started
/// (logged once; children then rely on the parent-death signal alone).
pub(super) fn registration() -> Option<Registration> {
    let watcher = WATCHER.get_or_init(|| match start() {
        Ok(watcher) => Some(watcher),
        Err(error) => {
            tracing::warn!(%error, "cannot start the process-group watcher; grandchildren may outlive a killed skep");
            None
        }
    });
    watcher.as_ref().map(Registration)
}

/// Forgets group `pid`: called after the group was SIGKILLed, before its leader is reaped.
pub(super) fn unregister(pid: Pid) {
    if let Some(Some(watcher)) = WATCHER.get() {
        watcher.send(UNREGISTER, pid);
    }
}

impl Watcher {
    fn send(&self, op: u8, pid: Pid) {
        let raw = pid.as_raw_nonzero().get().to_le_bytes();
        let message = [op, raw[0], raw[1], raw[2], raw[3]];
        // NOSIGNAL: a dead watcher must not take us (or a child before exec) down with SIGPIPE.
        while let Err(Errno::INTR) = rustix::net::send(&self.socket, &message, SendFlags::NOSIGNAL) {}
    }
}

fn start() -> io::Result<Watcher> {
    let (ours, theirs) =
        rustix::net::socketpair(AddressFamily::UNIX, SocketType::SEQPACKET, SocketFlags::CLOEXEC, None)?;
    // Allocated here: the forked child may not allocate.
    let mut table = vec![0_i32; CAPACITY].into_boxed_slice();
    // SAFETY: the child runs only `watch`, which makes raw system calls, never
    // allocates, locks or unwinds, and ends in _exit.
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => {
            drop(ours);
            watch(theirs, &mut table)
        }
        pid => {
            tracing::debug!(pid, "process-group watcher started");
            Ok(Watcher { socket: ours })
        }
    }
}

/// The watcher's whole life, in the forked child.
fn watch(socket: OwnedFd, table: &mut [i32]) -> ! {
    for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: setting a disposition to SIG_IGN installs no handler code.
        unsafe { libc::signal(signal, libc::SIG_IGN) };
    }
    let _ = rustix::process::setpgid(None, None);
    // Descriptors we inherited (agents' pipes, our caller's stdout) must not
    // be held open by a process that outlives their owners' intent.
    close_all_but(socket.as_raw_fd());
    let mut len = 0;
    let mut message = [0_u8; 8];
    loop {
        match rustix::net::recv(socket.as_fd(), &mut message, RecvFlags::empty()) {
            Ok((_, 0)) => break,
            Ok((_, 5)) => {
                let pid = i32::from_le_bytes([message[1], message[2], message[3], message[4]]);
                match message[0] {
                    REGISTER if len < table.len() => {
                        table[len] = pid;
                        len += 1;
                    }
                    UNREGISTER => {
                        if let Some(i) = table[..len].iter().position(|&p| p == pid) {
                            len -= 1;
                            table.swap(i, len);
                        }
                    }
                    _ => {}
                }
            }
            Ok(_) | Err(Errno::INTR) => {}
            Err(_) => break,
        }
    }
    for pid in table[..len].iter().filter_map(|&raw| Pid::from_raw(raw)) {
        let _ = rustix::process::kill_process_group(pid, Signal::KILL);
    }
    // SAFETY: ends the forked child without running destructors or atexit handlers.
    unsafe { libc::_exit(0) }
}

fn close_all_but(keep: RawFd) {
    let keep = keep as libc::c_uint;
    let below = keep.checked_sub(1).map(|last| (0, last));
    for (first, last) in below.into_iter().chain([(keep + 1, libc::c_uint::MAX)]) {
        // SAFETY: close_range takes plain integers and only closes descriptors.
        let closed = unsafe { libc::syscall(libc::SYS_close_range, first, last, 0 as libc::c_uint) } == 0;
        if !closed {
            // Before Linux 5.9: close one by one up to a generous bound.
            for fd in first..=last.min(65_536) {
                // SAFETY: close takes a plain integer; nothing of ours uses these descriptors again.
                unsafe { libc::close(fd as libc::c_int) };
            }
        }
    }
}
