//! The floor of the pipelined benchmarks: newline-terminated lines through
//! `raw-echo`, at most `window` in flight, parsing nothing.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::sync::Semaphore;

/// Sends `line` `lines` times with at most `window` unanswered: the writer
/// sends whatever the window allows in one write, the reader counts
/// newlines and reopens the window.
pub async fn raw_pipelined(
    input: &mut (impl AsyncWrite + Unpin),
    output: &mut (impl AsyncRead + Unpin),
    line: &[u8],
    lines: usize,
    window: usize,
) -> io::Result<()> {
    let open = Semaphore::new(window);
    let write = async {
        let mut burst = Vec::with_capacity(window * line.len());
        let mut sent = 0;
        while sent < lines {
            open.acquire().await.map_err(io::Error::other)?.forget();
            let mut n = 1;
            while n < lines - sent {
                let Ok(permit) = open.try_acquire() else { break };
                permit.forget();
                n += 1;
            }
            for _ in 0..n {
                burst.extend_from_slice(line);
            }
            input.write_all(&burst).await?;
            burst.clear();
            sent += n;
        }
        io::Result::Ok(())
    };
    let read = async {
        let mut buf = vec![0u8; 64 * 1024];
        let mut received = 0;
        while received < lines {
            let n = output.read(&mut buf).await?;
            if n == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "raw-echo ended early"));
            }
            let complete = buf[..n].iter().filter(|&&b| b == b'\n').count();
            open.add_permits(complete);
            received += complete;
        }
        Ok(())
    };
    tokio::try_join!(write, read)?;
    Ok(())
}
