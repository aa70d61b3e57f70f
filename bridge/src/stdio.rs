//! Serving on the process's own stdin and stdout.
//!
//! [`protocol_stdio`] moves fd 1 to a private descriptor for the protocol and
//! points fd 1 at stderr, so a stray print from any library (or a child that
//! inherits fd 1) lands in the log instead of corrupting the wire.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::pin::Pin;

use tokio::io::{AsyncRead, AsyncWrite};

/// A reader for the protocol's input.
pub type ProtocolReader = Pin<Box<dyn AsyncRead + Send>>;
/// A writer for the protocol's output.
pub type ProtocolWriter = Pin<Box<dyn AsyncWrite + Send>>;

/// Takes fd 0 for input and a private copy of fd 1 for output, then points
/// fd 1 at stderr. Call once, early, before anything else may print.
pub fn protocol_stdio() -> io::Result<(ProtocolReader, ProtocolWriter)> {
    // SAFETY: F_DUPFD_CLOEXEC returns a new descriptor or -1; it touches no memory.
    let private = cvt(unsafe { libc::fcntl(libc::STDOUT_FILENO, libc::F_DUPFD_CLOEXEC, 3) })?;
    // SAFETY: `private` is a fresh descriptor owned by nobody else.
    let output = unsafe { OwnedFd::from_raw_fd(private) };
    // SAFETY: dup2 on two open descriptors; fd 1 now refers to stderr.
    cvt(unsafe { libc::dup2(libc::STDERR_FILENO, libc::STDOUT_FILENO) })?;
    // SAFETY: fd 0 stays open for the process's life and is used only here.
    let input = unsafe { OwnedFd::from_raw_fd(libc::STDIN_FILENO) };
    Ok((reader(input)?, writer(output)?))
}

/// Pipes and sockets are polled by the runtime; anything else (a file, a
/// terminal) cannot be, and goes through tokio's blocking file wrapper.
fn reader(fd: OwnedFd) -> io::Result<ProtocolReader> {
    Ok(match kind(fd.as_raw_fd())? {
        Kind::Pipe => Box::pin(tokio::net::unix::pipe::Receiver::from_owned_fd(fd)?),
        Kind::Socket => Box::pin(unix_stream(fd)?),
        Kind::Other => Box::pin(tokio::fs::File::from_std(File::from(fd))),
    })
}

fn writer(fd: OwnedFd) -> io::Result<ProtocolWriter> {
    Ok(match kind(fd.as_raw_fd())? {
        Kind::Pipe => Box::pin(tokio::net::unix::pipe::Sender::from_owned_fd(fd)?),
        Kind::Socket => Box::pin(unix_stream(fd)?),
        Kind::Other => Box::pin(tokio::fs::File::from_std(File::from(fd))),
    })
}

fn unix_stream(fd: OwnedFd) -> io::Result<tokio::net::UnixStream> {
    let stream = std::os::unix::net::UnixStream::from(fd);
    stream.set_nonblocking(true)?;
    tokio::net::UnixStream::from_std(stream)
}

enum Kind {
    Pipe,
    Socket,
    Other,
}

fn kind(fd: RawFd) -> io::Result<Kind> {
    // SAFETY: fstat writes into the zeroed struct we own.
    let mut stat: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `fd` is open and `stat` is a valid out-pointer.
    cvt(unsafe { libc::fstat(fd, &mut stat) })?;
    Ok(match stat.st_mode & libc::S_IFMT {
        libc::S_IFIFO => Kind::Pipe,
        libc::S_IFSOCK => Kind::Socket,
        _ => Kind::Other,
    })
}

fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret == -1 { Err(io::Error::last_os_error()) } else { Ok(ret) }
}
