//! The pool's fast path: a caller takes an agent with room straight from the
//! role's idle set and gives it back with a counter decrement, without a
//! message to the supervisor and back per call.
//!
//! The supervisor stays the owner of every agent. It puts an agent in the set
//! when it becomes ready and takes it out before it drains, stops or is
//! reaped; the set only lends. What a release must tell the supervisor (the
//! outcome for the breaker and the stats, the call count for `max_calls`) goes
//! to a ledger the supervisor books from whenever it runs, and a release wakes
//! it only when it must act now: a caller waits in its queue, the call did not
//! succeed, the agent is due for a recycle or no longer serving, the breaker
//! is not closed, or the ledger is long. Many releases share one wake.
//!
//! Callers admit themselves only while the breaker is closed (where `admit`
//! changes nothing) and nobody is queued, so the queue keeps its order and
//! half-open probes, refusals and queue timeouts stay with the supervisor.

use std::sync::atomic::Ordering::{Acquire, Relaxed, Release, SeqCst};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use skep_bridge::Client;
use tokio::sync::{broadcast, mpsc, watch};

use super::{Msg, NOISE_LIMIT};
use crate::breaker::Permit;
use crate::events::{Event, Outcome};
use crate::launch::Agent;
use crate::lease::Lease;
use crate::stderr_ring::StderrTail;

/// The gate while callers may not admit themselves (breaker not closed, role failed).
const SHUT: u64 = u64::MAX - 1;
/// The gate once the pool is stopping: never opened again.
const STOPPED: u64 = u64::MAX;
/// Releases the ledger holds before one wakes the supervisor regardless:
/// bounds its memory and how late the stats and the breaker hear of successes.
const LEDGER_WAKE: usize = 256;

/// One ready agent as callers see it: what a lease needs, and its counters.
/// Shared by the supervisor's slot, the idle set and the agent's leases.
#[derive(Debug)]
pub(crate) struct Seat {
    pub id: u64,
    /// `role/N`, made once per agent.
    pub name: Arc<str>,
    pub client: Client,
    pub pid: u32,
    pub stderr: StderrTail,
    pub exit: watch::Receiver<Option<String>>,
    /// Leases on this agent not yet released.
    in_flight: AtomicUsize,
    /// Leases handed out over its life; it takes no more than `limit`.
    handed: AtomicU64,
    /// Its own `max_calls`: past it the supervisor recycles it.
    limit: u64,
    /// In the idle set (ready); false once the supervisor withdrew it.
    serving: AtomicBool,
}

impl Seat {
    /// A seat for an agent that just became ready.
    pub(crate) fn new(id: u64, name: Arc<str>, agent: &Agent, limit: u64) -> Seat {
        Seat {
            id,
            name,
            client: agent.client.clone(),
            pid: agent.pid,
            stderr: agent.stderr.clone(),
            exit: agent.exit.clone(),
            in_flight: AtomicUsize::new(0),
            handed: AtomicU64::new(0),
            limit,
            serving: AtomicBool::new(true),
        }
    }

    /// Leases on the agent not yet released.
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(SeqCst)
    }
}

/// How a lease ended, waiting in the ledger for the supervisor to book it.
#[derive(Debug)]
pub(crate) struct Done {
    pub id: u64,
    pub outcome: Outcome,
    pub elapsed: Duration,
    pub permit: Option<Permit>,
}

/// What callers and the supervisor share: the idle set, the gate, the ledger.
#[derive(Debug)]
pub(crate) struct FastPath {
    role: Arc<str>,
    concurrency: usize,
    /// Every release wakes the supervisor (a role with `max_rss` reads the
    /// agent's memory after each call).
    eager: bool,
    tx: mpsc::UnboundedSender<Msg>,
    events: broadcast::Sender<Event>,
    /// The breaker generation callers admit themselves under, or [`SHUT`] / [`STOPPED`].
    gate: AtomicU64,
    /// Callers queued at the supervisor; while any wait, releases wake it and
    /// callers queue behind them.
    waiting: AtomicUsize,
    /// A wake is on its way: later releases need not send another.
    woken: AtomicBool,
    seats: Mutex<Vec<Arc<Seat>>>,
    ledger: Mutex<Vec<Done>>,
}

impl FastPath {
    /// An empty set with the gate shut until the supervisor opens it.
    pub(crate) fn new(
        role: &crate::config::RoleConfig,
        tx: mpsc::UnboundedSender<Msg>,
        events: broadcast::Sender<Event>,
    ) -> FastPath {
        FastPath {
            role: role.name.as_str().into(),
            concurrency: role.concurrency,
            eager: role.max_rss.is_some(),
            tx,
            events,
            gate: AtomicU64::new(SHUT),
            waiting: AtomicUsize::new(0),
            woken: AtomicBool::new(false),
            seats: Mutex::new(Vec::new()),
            ledger: Mutex::new(Vec::new()),
        }
    }

    /// A lease taken without the supervisor, when the breaker is closed,
    /// nobody is queued and an agent has room.
    pub(crate) fn try_lease(self: &Arc<Self>) -> Option<Lease> {
        let generation = self.gate.load(Acquire);
        if generation >= SHUT || self.waiting.load(SeqCst) > 0 {
            return None;
        }
        let seat = self.take()?;
        Some(Lease::new(seat, Some(Permit::closed(generation)), Arc::clone(self)))
    }

    /// The least loaded serving agent with room, counted as leased. An
    /// agent's load counts the calls it was given up on too (cancelled or
    /// timed out, not yet answered): one that ignores cancellation is still
    /// busy with them, and a call sent there would wait behind them while
    /// another agent idles.
    pub(crate) fn take(&self) -> Option<Arc<Seat>> {
        let seats = self.lock_seats();
        let mut best: Option<(&Arc<Seat>, usize)> = None;
        for seat in seats.iter() {
            let n = seat.in_flight.load(SeqCst);
            // An agent whose output closed is dead or dying: its exit is on the way to the supervisor.
            if n >= self.concurrency || seat.handed.load(Relaxed) >= seat.limit || !seat.client.is_connected() {
                continue;
            }
            let load = n + seat.client.abandoned();
            if best.is_none_or(|(_, least)| load < least) {
                best = Some((seat, load));
                if load == 0 {
                    break;
                }
            }
        }
        let (seat, _) = best?;
        // Only here, under the set's lock, does `in_flight` grow: two callers
        // cannot both see the last place free.
        let was = seat.in_flight.fetch_add(1, SeqCst);
        seat.handed.fetch_add(1, Relaxed);
        let seat = Arc::clone(seat);
        drop(seats);
        if was == 0 {
            self.emit(|| Event::AgentBusy { role: self.role.to_string(), agent: seat.name.to_string() });
        }
        Some(seat)
    }

    /// Counts a lease on a ready agent whatever its load (broadcasts).
    pub(crate) fn take_regardless(&self, seat: &Arc<Seat>) {
        let _seats = self.lock_seats();
        if seat.in_flight.fetch_add(1, SeqCst) == 0 {
            self.emit(|| Event::AgentBusy { role: self.role.to_string(), agent: seat.name.to_string() });
        }
        seat.handed.fetch_add(1, Relaxed);
    }

    /// Gives a lease back (from its `Drop`): books it in the ledger and wakes
    /// the supervisor only when it must act now.
    pub(crate) fn release(&self, seat: &Seat, done: Done) {
        // A hung, dead or noisy agent is out of the set before its place is
        // free: no caller may take it in the moment before the supervisor
        // replaces it.
        let leaving = matches!(done.outcome, Outcome::Timeout | Outcome::Crashed) || seat.client.noise() > NOISE_LIMIT;
        if leaving {
            self.withdraw(seat.id);
        }
        let left = seat.in_flight.fetch_sub(1, SeqCst) - 1;
        let serving = seat.serving.load(SeqCst);
        // After the decrement: the supervisor publishes `waiting` before it
        // looks for room, so either it sees this place free or we see it waiting.
        let urgent = self.eager
            || done.outcome != Outcome::Ok
            || !serving
            || seat.handed.load(Relaxed) >= seat.limit
            || self.waiting.load(SeqCst) > 0
            || self.gate.load(Relaxed) >= SHUT;
        let long = {
            let mut ledger = self.ledger.lock().unwrap_or_else(PoisonError::into_inner);
            ledger.push(done);
            ledger.len() >= LEDGER_WAKE
        };
        if left == 0 && serving {
            self.emit(|| Event::AgentIdle { role: self.role.to_string(), agent: seat.name.to_string() });
        }
        if (urgent || long) && !self.woken.swap(true, SeqCst) {
            let _ = self.tx.send(Msg::Wake);
        }
    }

    /// The releases not yet booked, swapped for `spare` (the supervisor's
    /// empty buffer, so the ledger keeps a capacity).
    pub(crate) fn take_ledger(&self, spare: &mut Vec<Done>) {
        // Cleared first: a release pushed after the swap sends its own wake.
        self.woken.store(false, SeqCst);
        let mut ledger = self.ledger.lock().unwrap_or_else(PoisonError::into_inner);
        std::mem::swap(&mut *ledger, spare);
    }

    /// Puts a ready agent in the set.
    pub(crate) fn seat(&self, seat: Arc<Seat>) {
        self.lock_seats().push(seat);
    }

    /// Takes an agent out of the set: no caller is handed it from now on.
    pub(crate) fn withdraw(&self, id: u64) {
        let mut seats = self.lock_seats();
        if let Some(at) = seats.iter().position(|s| s.id == id) {
            seats.swap_remove(at).serving.store(false, SeqCst);
        }
    }

    /// Takes an idle agent out of the set, unless a caller leased it meanwhile.
    pub(crate) fn withdraw_if_idle(&self, id: u64) -> bool {
        let mut seats = self.lock_seats();
        let Some(at) = seats.iter().position(|s| s.id == id) else { return false };
        if seats[at].in_flight.load(SeqCst) > 0 {
            return false;
        }
        seats.swap_remove(at).serving.store(false, SeqCst);
        true
    }

    /// Callers queued at the supervisor, published before it looks for room.
    pub(crate) fn set_waiting(&self, waiting: usize) {
        self.waiting.store(waiting, SeqCst);
    }

    /// Lets callers admit themselves under `generation` (the breaker is
    /// closed and the role serves), or not (`None`). A stopped pool stays shut.
    pub(crate) fn set_gate(&self, generation: Option<u64>) {
        let want = generation.map_or(SHUT, |g| g.min(SHUT - 1));
        let now = self.gate.load(Relaxed);
        if now != want && now != STOPPED {
            let _ = self.gate.compare_exchange(now, want, Release, Relaxed);
        }
    }

    /// Shuts the gate for good: the pool is stopping, and callers must hear so from the supervisor.
    pub(crate) fn stop(&self) {
        self.gate.store(STOPPED, SeqCst);
    }

    fn lock_seats(&self) -> MutexGuard<'_, Vec<Arc<Seat>>> {
        self.seats.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sends an event only when someone listens: building one allocates.
    fn emit(&self, event: impl FnOnce() -> Event) {
        if self.events.receiver_count() > 0 {
            let _ = self.events.send(event());
        }
    }
}
