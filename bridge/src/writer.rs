//! The one writer task of a served connection (a client's is its outbox,
//! `client/outbox.rs`, which shares these limits): frames are queued on a bounded
//! channel and written in arrival order, coalescing whatever is already queued
//! into one `write` so a busy connection pays one syscall per burst, not per
//! message.

use std::time::Duration;

use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Bytes gathered before a write; one burst of small frames fits.
pub(crate) const BURST: usize = 64 * 1024;
/// How long closing the stream may take; a peer that never reads could
/// otherwise hold a final flush forever.
pub(crate) const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// Writes queued frames until every sender is gone or `stop` fires, then
/// closes the stream so the peer sees end of input.
pub(crate) async fn write_loop<W, T>(
    mut writer: W,
    frames: mpsc::Receiver<T>,
    stop: CancellationToken,
) -> std::io::Result<()>
where
    W: AsyncWrite + Unpin,
    T: AsRef<[u8]>,
{
    let written = tokio::select! {
        written = pump(&mut writer, frames) => written,
        () = stop.cancelled() => Ok(()),
    };
    let closed = tokio::time::timeout(CLOSE_WAIT, writer.shutdown()).await.unwrap_or(Ok(()));
    written.and(closed)
}

async fn pump<W, T>(writer: &mut W, mut frames: mpsc::Receiver<T>) -> std::io::Result<()>
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
    Ok(())
}
