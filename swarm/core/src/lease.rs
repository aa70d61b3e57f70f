//! What a call holds while it runs: a [`Lease`] on a pooled agent, or a
//! [`Ticket`] for a call that needs no agent (command roles). Dropping either
//! tells the supervisor how the call ended, so a cancelled call gives its
//! agent and its breaker permit back too.

use std::sync::Arc;
use std::time::Duration;

use skep_bridge::Client;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::breaker::Permit;
use crate::events::Outcome;
use crate::launch;
use crate::supervisor::Msg;

/// An agent borrowed for one call. Dropping it gives the agent back; a lease
/// dropped without [`Lease::finish`] counts as a cancelled call.
#[derive(Debug)]
pub(crate) struct Lease {
    pub client: Client,
    /// `role/N`, shared with the supervisor's slot: a lease allocates no name.
    pub agent: Arc<str>,
    pub pid: u32,
    pub(crate) id: u64,
    pub(crate) stderr: crate::stderr_ring::StderrTail,
    pub(crate) exit: tokio::sync::watch::Receiver<Option<String>>,
    pub(crate) started: Instant,
    pub(crate) outcome: Outcome,
    /// The breaker's permit; `None` for broadcasts, which the breaker does not judge.
    pub(crate) permit: Option<Permit>,
    pub(crate) pool: mpsc::UnboundedSender<Msg>,
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
    /// Records how the call ended; the agent goes back when the lease drops.
    pub(crate) fn finish(mut self, outcome: Outcome) -> Duration {
        self.outcome = outcome;
        self.started.elapsed()
    }

    /// The agent's exit status (waiting briefly for it: output closes a moment
    /// before the exit is reaped) and the tail of its stderr.
    pub(crate) async fn crash_report(&mut self) -> (String, String) {
        let exited = tokio::time::timeout(Duration::from_millis(50), self.exit.wait_for(Option::is_some)).await;
        let exit = match exited {
            Ok(Ok(status)) => status.clone().unwrap_or_default(),
            _ => "output closed; exit status not known yet".to_owned(),
        };
        (exit, self.stderr.tail(launch::TAIL_BYTES))
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let release = Msg::Release {
            id: self.id,
            outcome: self.outcome,
            elapsed: self.started.elapsed(),
            permit: self.permit.take(),
        };
        let _ = self.pool.send(release);
    }
}
