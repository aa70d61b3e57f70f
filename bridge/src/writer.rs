//! The one writer task of a connection: frames are queued on a bounded
//! channel and written in arrival order, coalescing whatever is already queued
//! into one `write` so a busy connection pays one syscall per burst, not per
//! message.

use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

/// Bytes gathered before a write; one burst of small frames fits.
const BURST: usize = 64 * 1024;

/// Writes queued frames until every sender is gone, then closes the stream so
/// the peer sees end of input.
pub(crate) async fn write_loop<W, T>(mut writer: W, mut frames: mpsc::Receiver<T>) -> std::io::Result<()>
where
    W: AsyncWrite + Unpin,
    T: AsRef<[u8]>,
{
    let mut burst = Vec::with_capacity(BURST);
    while let Some(first) = frames.recv().await {
        if first.as_ref().len() >= BURST {
            writer.write_all(first.as_ref()).await?;
        } else {
            burst.extend_from_slice(first.as_ref());
            drop(first);
            while burst.len() < BURST {
                let Ok(next) = frames.try_recv() else { break };
                burst.extend_from_slice(next.as_ref());
            }
            writer.write_all(&burst).await?;
            burst.clear();
            if burst.capacity() > 4 * BURST {
                burst.shrink_to(BURST);
            }
        }
        writer.flush().await?;
    }
    writer.shutdown().await
}
