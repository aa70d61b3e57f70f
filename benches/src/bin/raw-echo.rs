//! The physical floor for the bridge benches: copies stdin to stdout as it
//! arrives (one write per read, so lines come back in the batches they were
//! read in), on a current-thread runtime. stdin and stdout must be pipes; they
//! are polled by the runtime like the bridge's `protocol_stdio`, not through
//! tokio's blocking-thread `stdin()`/`stdout()`.

use std::os::fd::AsFd;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::pipe;

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let mut input = pipe::Receiver::from_owned_fd(std::io::stdin().as_fd().try_clone_to_owned()?)?;
    let mut output = pipe::Sender::from_owned_fd(std::io::stdout().as_fd().try_clone_to_owned()?)?;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = input.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        output.write_all(&buf[..n]).await?;
    }
}
