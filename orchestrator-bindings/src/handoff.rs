//! A call's first steps run on Node's own thread; the runtime takes the call
//! over only when it has to wait.
//!
//! Spawning a call on the runtime costs a thread hop before anything happens
//! (Node → runtime thread). Instead the call's future is polled once right
//! here, inside the runtime's context. If that finishes it (an idempotent
//! call answered from the cache), the promise is settled before `call`
//! returns, with no hop at all. If the future must wait, it is parked under a
//! waker that moves it to the runtime on the first wake, so the runtime polls
//! it only when there is something to do.
//!
//! Every `Swarm::call` starts here. A call that finds an idle agent takes it
//! without the supervisor (the core's idle set) and writes its request on
//! this thread (the bridge client's outbox), so the runtime thread wakes only
//! for the agent's answer: two context switches per call instead of three
//! (docs/benchmarks.md). A call that must wait for an agent is moved to the
//! runtime by the supervisor's wake.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Wake, Waker};

use futures::future::BoxFuture;
use tokio::runtime::Handle;

/// Runs `work` to completion: its first poll here, the rest on `runtime`.
pub fn run(runtime: &Handle, work: impl Future<Output = ()> + Send + 'static) {
    let mut work: BoxFuture<'static, ()> = Box::pin(work);
    let handoff = Arc::new(Handoff { runtime: runtime.clone(), state: Mutex::new(State::Polling { woken: false }) });
    let waker = Waker::from(Arc::clone(&handoff));
    let polled = {
        let _context = runtime.enter();
        std::panic::catch_unwind(AssertUnwindSafe(|| Pin::as_mut(&mut work).poll(&mut Context::from_waker(&waker))))
    };
    match polled {
        Ok(Poll::Pending) => {}
        // Done, or panicked: dropping the work then settles its promise (`Completion`'s drop).
        Ok(Poll::Ready(())) | Err(_) => return,
    }
    let mut state = handoff.lock();
    match *state {
        // Woken while it was being polled: there is something to do already.
        State::Polling { woken: true } => {
            *state = State::Moved;
            drop(state);
            drop(runtime.spawn(work));
        }
        _ => *state = State::Parked(work),
    }
}

/// The waker of a call polled once on Node's thread.
struct Handoff {
    runtime: Handle,
    state: Mutex<State>,
}

enum State {
    /// Its first poll is running.
    Polling { woken: bool },
    /// Waiting for its first wake, which moves it to the runtime.
    Parked(BoxFuture<'static, ()>),
    /// On the runtime, which polls it with its own waker from now on.
    Moved,
}

impl Handoff {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Wake for Handoff {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let mut state = self.lock();
        match std::mem::replace(&mut *state, State::Moved) {
            State::Polling { .. } => *state = State::Polling { woken: true },
            State::Parked(work) => {
                drop(state);
                // From the runtime's own thread (where most wakes come from)
                // this queues the task locally, without waking another thread.
                drop(self.runtime.spawn(work));
            }
            // A waker from the first poll, woken after the move: the runtime's own waker took over.
            State::Moved => {}
        }
    }
}
