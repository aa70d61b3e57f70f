//! The physical floor for two hops, as `skep serve` makes them: starts the
//! program named by its arguments (`raw-echo` in the benches) and copies
//! stdin to that child's stdin and the child's stdout to stdout, one write
//! per read, parsing nothing. Current-thread runtime, pipes polled by the
//! runtime, as in `raw-echo`: whatever `skep serve` takes above this is its
//! own work, not the pipes' or the scheduler's.

use std::os::fd::AsFd;
use std::process::Stdio;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::unix::pipe;
use tokio::process::Command;

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args_os().skip(1);
    let program = args.next().ok_or_else(|| std::io::Error::other("usage: raw-relay PROGRAM [ARGS...]"))?;
    let mut child =
        Command::new(program).args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).kill_on_drop(true).spawn()?;
    let to_child = child.stdin.take().ok_or_else(|| std::io::Error::other("child stdin is piped"))?;
    let from_child = child.stdout.take().ok_or_else(|| std::io::Error::other("child stdout is piped"))?;
    let input = pipe::Receiver::from_owned_fd(std::io::stdin().as_fd().try_clone_to_owned()?)?;
    let output = pipe::Sender::from_owned_fd(std::io::stdout().as_fd().try_clone_to_owned()?)?;
    // Closing the child's input when ours ends lets it exit, which ends the way back.
    let (down, up) = tokio::join!(copy(input, to_child), copy(from_child, output));
    down?;
    up?;
    child.wait().await?;
    Ok(())
}

/// Copies until end of input, one write per read; drops `to` at the end.
async fn copy(mut from: impl AsyncRead + Unpin, mut to: impl AsyncWrite + Unpin) -> std::io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        to.write_all(&buf[..n]).await?;
    }
}
