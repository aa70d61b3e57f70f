//! A client connection's output: the caller writes its own frame when the
//! stream is idle, and the writer task writes the rest.
//!
//! Handing every frame to a writer task costs a task wake-up per call on a
//! current-thread runtime, and a thread hop when the caller runs on another
//! thread (Node's, in the npm package), for a pipe write that almost never
//! blocks. So a caller that finds the stream idle and nothing queued writes
//! its frame itself, with a waker that does nothing: the write either takes
//! the whole frame, or the unwritten rest goes to the front of the queue for
//! the writer task, which waits for the stream properly. Otherwise the frame
//! is queued, and the writer task writes what is queued in one `write`.
//!
//! The rules that keep this correct:
//! - **One holder.** The stream is idle in the slot, or taken out by one
//!   caller or by the writer task; only its holder polls it (a second poller
//!   would replace the first one's waker). Whoever puts it back wakes the
//!   writer task if frames wait, so a queued frame is never stranded.
//! - **Order.** A caller writes itself only when nothing is queued, so no
//!   frame overtakes one queued before it.
//! - **Whole frames.** A caller never awaits while it holds the stream, so a
//!   cancelled call cannot leave half a frame on the wire.
//! - **Backpressure.** At most `capacity` frames wait; past that, `send`
//!   waits for room (a frame's unwritten rest is the one exception).

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::buffers::PooledBuf;
use crate::writer::{BURST, CLOSE_WAIT};

type Stream = Pin<Box<dyn AsyncWrite + Send>>;

/// The output of one connection, shared by its callers and its writer task.
pub(super) struct Outbox {
    state: Mutex<State>,
    capacity: usize,
    /// Fired when the connection is gone (end of input, `Client::close`, or
    /// a failed write): the writer task stops and closes the stream.
    gone: CancellationToken,
    /// Wakes the writer task: frames wait for an idle stream, or it must close.
    work: Notify,
    /// Wakes callers waiting for room in a full queue.
    room: Notify,
}

struct State {
    stream: Holder,
    queue: VecDeque<Queued>,
    /// A caller's flush did not finish; the writer task completes it.
    unflushed: bool,
    /// No frame is taken any more: the writer task writes what is queued,
    /// then closes the stream.
    closing: bool,
}

enum Holder {
    Idle(Stream),
    /// A caller or the writer task is writing.
    Taken,
    /// Closed, or a write failed.
    Gone,
}

/// A frame waiting for the writer task, and how much of it is written already.
struct Queued {
    frame: PooledBuf,
    from: usize,
}

impl Queued {
    fn rest(&self) -> &[u8] {
        &self.frame[self.from..]
    }
}

/// Why a frame was not taken.
pub(super) enum Refused {
    /// The queue is full; the frame comes back.
    Full(PooledBuf),
    /// The connection is closing or gone.
    Closed,
}

/// How far a caller's own write got.
enum Inline {
    Done,
    Unflushed,
    Partly(usize),
}

impl Outbox {
    /// An outbox over `stream`, which the writer task ([`Outbox::run`]) closes.
    pub(super) fn new<W: AsyncWrite + Send + 'static>(stream: W, capacity: usize, gone: CancellationToken) -> Self {
        Outbox {
            state: Mutex::new(State {
                stream: Holder::Idle(Box::pin(stream)),
                queue: VecDeque::new(),
                unflushed: false,
                closing: false,
            }),
            capacity: capacity.max(1),
            gone,
            work: Notify::new(),
            room: Notify::new(),
        }
    }

    /// Sends `frame`, waiting for room while the queue is full. With `inline`,
    /// the frame is written on this thread when the stream is idle; without
    /// it, the frame always goes to the writer task (which coalesces a burst
    /// of frames into one write).
    pub(super) async fn send(&self, mut frame: PooledBuf, inline: bool) -> Result<(), Closed> {
        loop {
            // Made before the attempt, so a `notify_waiters` after a refusal
            // still reaches it; making one is an atomic load, no lock.
            let room = self.room.notified();
            match self.try_send(frame, inline) {
                Ok(()) => return Ok(()),
                Err(Refused::Closed) => return Err(Closed),
                Err(Refused::Full(back)) => frame = back,
            }
            room.await;
        }
    }

    /// Sends `frame` if that needs no wait (see [`Outbox::send`]).
    pub(super) fn try_send(&self, frame: PooledBuf, inline: bool) -> Result<(), Refused> {
        let mut state = self.lock();
        if state.closing {
            return Err(Refused::Closed);
        }
        match state.stream {
            Holder::Gone => return Err(Refused::Closed),
            Holder::Idle(_) if inline && state.queue.is_empty() && !state.unflushed => {
                let Holder::Idle(mut stream) = std::mem::replace(&mut state.stream, Holder::Taken) else {
                    unreachable!("matched as idle")
                };
                drop(state);
                let written = write_now(&mut stream, &frame);
                let mut state = self.lock();
                match written {
                    Ok(Inline::Done) => {}
                    Ok(Inline::Unflushed) => state.unflushed = true,
                    // Its rest goes before anything queued meanwhile.
                    Ok(Inline::Partly(from)) => state.queue.push_front(Queued { frame, from }),
                    Err(e) => {
                        tracing::debug!(%e, "write to peer failed");
                        state.stream = Holder::Gone;
                        drop(state);
                        self.gone.cancel();
                        return Err(Refused::Closed);
                    }
                }
                self.put_back(state, stream);
                return Ok(());
            }
            Holder::Idle(_) | Holder::Taken => {}
        }
        if state.queue.len() >= self.capacity {
            return Err(Refused::Full(frame));
        }
        state.queue.push_back(Queued { frame, from: 0 });
        // A taken stream's holder checks the queue when it puts the stream back.
        if matches!(state.stream, Holder::Idle(_)) {
            self.work.notify_one();
        }
        Ok(())
    }

    /// Takes no more frames; what is queued is still written, then the
    /// stream is closed (the last handle of a client is gone).
    pub(super) fn close(&self) {
        let mut state = self.lock();
        state.closing = true;
        if matches!(state.stream, Holder::Idle(_)) {
            self.work.notify_one();
        }
        self.room.notify_waiters();
    }

    /// The writer task: writes what callers queued, coalescing a burst into
    /// one `write`, until the outbox closes or the connection is gone; then
    /// closes the stream so the peer sees end of input.
    pub(super) async fn run(&self) -> io::Result<()> {
        let mut batch = Vec::new();
        let mut burst = Vec::with_capacity(BURST);
        let mut held = None;
        loop {
            let work = self.work.notified();
            tokio::pin!(work);
            work.as_mut().enable();
            let mut stream = match self.next(&mut held, &mut batch) {
                Next::Wait => {
                    // Once gone, only a caller putting the stream back wakes it.
                    if self.gone.is_cancelled() {
                        work.await;
                    } else {
                        tokio::select! {
                            () = work => {}
                            () = self.gone.cancelled() => {}
                        }
                    }
                    continue;
                }
                Next::Finished => return Ok(()),
                Next::Close(stream) => return close(stream).await,
                Next::Write(stream) => stream,
            };
            self.room.notify_waiters();
            let written = tokio::select! {
                written = write_batch(stream.as_mut(), &batch, &mut burst) => written,
                () = self.gone.cancelled() => Ok(()),
            };
            batch.clear();
            if let Err(e) = written {
                self.lock().stream = Holder::Gone;
                self.gone.cancel();
                let _ = close(stream).await;
                return Err(e);
            }
            held = Some(stream);
        }
    }

    /// The writer task's next step, decided under the lock. `held` is the
    /// stream the task still holds from its last write.
    fn next(&self, held: &mut Option<Stream>, batch: &mut Vec<Queued>) -> Next {
        let mut state = self.lock();
        if self.gone.is_cancelled() {
            // Gone: nothing more reaches the peer.
            state.closing = true;
            state.queue.clear();
            state.unflushed = false;
            self.room.notify_waiters();
        }
        let stream = match held.take() {
            Some(stream) => stream,
            None => match std::mem::replace(&mut state.stream, Holder::Taken) {
                Holder::Idle(stream) => stream,
                // A caller holds it and wakes this task when it puts it back.
                Holder::Taken => return Next::Wait,
                Holder::Gone => {
                    state.stream = Holder::Gone;
                    return Next::Finished;
                }
            },
        };
        if state.queue.is_empty() && !state.unflushed {
            if state.closing {
                state.stream = Holder::Gone;
                return Next::Close(stream);
            }
            state.stream = Holder::Idle(stream);
            return Next::Wait;
        }
        state.unflushed = false;
        let mut bytes = 0;
        while bytes < BURST {
            let Some(queued) = state.queue.pop_front() else { break };
            bytes += queued.rest().len();
            batch.push(queued);
        }
        Next::Write(stream)
    }

    /// Returns the stream a caller took; wakes the writer task if it has work.
    fn put_back(&self, mut state: MutexGuard<'_, State>, stream: Stream) {
        state.stream = Holder::Idle(stream);
        if !state.queue.is_empty() || state.unflushed || state.closing {
            self.work.notify_one();
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The outbox is closing or gone.
#[derive(Debug)]
pub(super) struct Closed;

enum Next {
    Wait,
    Write(Stream),
    Close(Stream),
    Finished,
}

/// Writes as much of `bytes` as the stream takes without waiting.
fn write_now(stream: &mut Stream, bytes: &[u8]) -> io::Result<Inline> {
    let mut cx = Context::from_waker(Waker::noop());
    let mut done = 0;
    while done < bytes.len() {
        match stream.as_mut().poll_write(&mut cx, &bytes[done..]) {
            Poll::Ready(Ok(0)) => return Err(io::ErrorKind::WriteZero.into()),
            Poll::Ready(Ok(n)) => done += n,
            Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
            Poll::Ready(Err(e)) => return Err(e),
            Poll::Pending => return Ok(Inline::Partly(done)),
        }
    }
    match stream.as_mut().poll_flush(&mut cx) {
        Poll::Ready(Ok(())) => Ok(Inline::Done),
        Poll::Ready(Err(e)) => Err(e),
        Poll::Pending => Ok(Inline::Unflushed),
    }
}

/// Writes a batch: a lone frame as it is, several copied into one buffer.
async fn write_batch(
    mut stream: Pin<&mut (dyn AsyncWrite + Send)>,
    batch: &[Queued],
    burst: &mut Vec<u8>,
) -> io::Result<()> {
    if let [one] = batch {
        stream.write_all(one.rest()).await?;
    } else if !batch.is_empty() {
        for queued in batch {
            burst.extend_from_slice(queued.rest());
        }
        let written = stream.write_all(burst).await;
        burst.clear();
        if burst.capacity() > 4 * BURST {
            burst.shrink_to(BURST);
        }
        written?;
    }
    stream.flush().await
}

async fn close(mut stream: Stream) -> io::Result<()> {
    tokio::time::timeout(CLOSE_WAIT, stream.shutdown()).await.unwrap_or(Ok(()))
}
