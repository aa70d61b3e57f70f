//! What a call holds while it runs: a [`Lease`] on a pooled agent, or a
//! [`Ticket`] for a call that needs no agent (command roles). Dropping either
//! tells the supervisor how the call ended, so a cancelled call gives its
//! agent and its breaker permit back too. A lease gives its agent back
//! through the pool's fast path (`supervisor/fast.rs`): a counter and a
//! ledger entry, and a message only when the supervisor must act.

use std::sync::Arc;
use std::time::Duration;

use skep_bridge::Client;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::breaker::Permit;
use crate::events::Outcome;
use crate::launch;
use crate::supervisor::{Done, FastPath, Msg, Seat};

/// An agent borrowed for one call. Dropping it gives the agent back; a lease
/// dropped without [`Lease::finish`] counts as a cancelled call.
#[derive(Debug)]
pub(crate) struct Lease {
    /// `role/N`, shared with the supervisor's slot: a lease allocates no name.
    pub agent: Arc<str>,
    pub pid: u32,
    seat: Arc<Seat>,
    pub(crate) started: Instant,
    pub(crate) outcome: Outcome,
    /// The breaker's permit; `None` for broadcasts, which the breaker does not judge.
    pub(crate) permit: Option<Permit>,
    fast: Arc<FastPath>,
}

/// A call admitted by the breaker that runs without a pooled agent (a
/// command role's process). Dropping it books the outcome.
#[derive(Debug)]
pub(crate) struct Ticket {
    permit: Option<Permit>,
    started: Instant,
    outcome: Outcome,
    pool: mpsc::UnboundedSender<Msg>,
}

impl Ticket {
    /// A ticket for an admitted call; until [`Ticket::finish`] it counts as cancelled.
    pub(crate) fn new(permit: Permit, pool: mpsc::UnboundedSender<Msg>) -> Ticket {
        Ticket { permit: Some(permit), started: Instant::now(), outcome: Outcome::Cancelled, pool }
    }

    /// Records how the call ended.
    pub(crate) fn finish(mut self, outcome: Outcome) -> Duration {
        self.outcome = outcome;
        self.started.elapsed()
    }

    /// Gives the permit back for a call that ran nowhere: not a call in the role's stats.
    pub(crate) fn unused(mut self) {
        if let Some(permit) = self.permit.take() {
            let _ = self.pool.send(Msg::Unused(permit));
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let Some(permit) = self.permit.take() {
            let _ = self.pool.send(Msg::Judge { permit, outcome: self.outcome, elapsed: self.started.elapsed() });
        }
    }
}

impl Lease {
    /// A lease on `seat`, already counted in its `in_flight`.
    pub(crate) fn new(seat: Arc<Seat>, permit: Option<Permit>, fast: Arc<FastPath>) -> Lease {
        Lease {
            agent: Arc::clone(&seat.name),
            pid: seat.pid,
            seat,
            started: Instant::now(),
            outcome: Outcome::Cancelled,
            permit,
            fast,
        }
    }

    /// The agent's connection.
    pub(crate) fn client(&self) -> &Client {
        &self.seat.client
    }

    /// Records how the call ended; the agent goes back when the lease drops.
    pub(crate) fn finish(mut self, outcome: Outcome) -> Duration {
        self.outcome = outcome;
        self.started.elapsed()
    }

    /// The agent's exit status (waiting briefly for it: output closes a moment
    /// before the exit is reaped) and the tail of its stderr.
    pub(crate) async fn crash_report(&self) -> (String, String) {
        let mut exit = self.seat.exit.clone();
        let exited = tokio::time::timeout(Duration::from_millis(50), exit.wait_for(Option::is_some)).await;
        let exit = match exited {
            Ok(Ok(status)) => status.clone().unwrap_or_default(),
            _ => "output closed; exit status not known yet".to_owned(),
        };
        (exit, self.seat.stderr.tail(launch::TAIL_BYTES))
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let done = Done {
            id: self.seat.id,
            outcome: self.outcome,
            elapsed: self.started.elapsed(),
            permit: self.permit.take(),
        };
        self.fast.release(&self.seat, done);
    }
}
