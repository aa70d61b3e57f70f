//! A role's supervisor: the one task that owns the role's agents, its
//! waiting callers, its restart history, its breaker and its stats.
//!
//! It starts `min_warm` agents in parallel, grows on demand up to
//! `max_agents`, replaces crashed and hung agents with full-jitter backoff,
//! recycles agents past `max_calls`, `max_lifetime` or `max_rss`
//! (`recycle.rs`: the replacement starts first), samples what each agent's
//! process group costs, shrinks idle ones after `idle_timeout`, and fails the
//! role after too many restarts. Everyone else talks to it through [`Msg`]s
//! (see `pool.rs`), except that callers lease its ready agents from the idle
//! set it keeps (`fast.rs`) and give them back there; it books those leases
//! from the set's ledger.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use skep_bridge::code;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::time::Instant;

use crate::breaker::{Breaker, CallOutcome, Permit};
use crate::config::{Protocol, RoleConfig};
use crate::error::SwarmError;
use crate::events::{Event, Outcome};
use crate::launch::{self, Agent, Exit, StartFailure};
use crate::lease::Lease;
use crate::limits::{CpuMeter, GroupUsage, RecycleCause, Retirement};
use crate::role_stats::Recorder;

mod fast;
mod msg;
mod recycle;
mod view;

pub(crate) use fast::{Done, FastPath, Seat};
pub(crate) use msg::Msg;
pub use view::AgentInfo;

/// More restarts than this within [`RESTART_WINDOW`] fail the role.
const RESTART_LIMIT: usize = 5;
const RESTART_WINDOW: Duration = Duration::from_secs(60);
/// Backoff before restarting: full jitter over `BASE * 2^attempt`, capped.
const BACKOFF_BASE: Duration = Duration::from_millis(100);
const BACKOFF_CAP: Duration = Duration::from_secs(30);
/// Lines of protocol noise after which an agent is replaced.
pub(super) const NOISE_LIMIT: u64 = 100;
/// How often the supervisor looks at idle agents and pending restarts.
const HOUSEKEEPING: Duration = Duration::from_millis(200);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Starting,
    Ready,
    /// Recycled: takes no new calls, finishes its own, and stops once idle
    /// and its replacement is ready (or could not be had).
    Draining,
    Stopping,
}

struct Slot {
    /// `role/N`, made once: every lease carries it, and a call's events name it.
    name: Arc<str>,
    state: State,
    agent: Option<Agent>,
    /// What callers lease, from the moment the agent is ready.
    seat: Option<Arc<Seat>>,
    /// Calls booked (leases released and taken from the ledger).
    calls: u64,
    born: Instant,
    idle_since: Instant,
    /// This agent's own (jittered) `max_calls` and `max_lifetime`.
    retirement: Retirement,
    /// Why it was recycled, once it was: each agent counts under one cause.
    recycled: Option<(RecycleCause, String)>,
    /// The agent started to take its place, while that one is starting.
    replacement: Option<u64>,
    /// Its process group's last sampled usage.
    usage: Option<GroupUsage>,
    /// The leader's own RSS, read right after its last call when the role has `max_rss`.
    leader_rss: u64,
    cpu: CpuMeter,
}

impl Slot {
    /// Leases on the agent not yet released (read live: callers lease without the supervisor).
    fn in_flight(&self) -> usize {
        self.seat.as_ref().map_or(0, |seat| seat.in_flight())
    }
}

pub(crate) struct Supervisor {
    role: Arc<RoleConfig>,
    tx: mpsc::UnboundedSender<Msg>,
    rx: mpsc::UnboundedReceiver<Msg>,
    events: broadcast::Sender<Event>,
    slots: BTreeMap<u64, Slot>,
    next_id: u64,
    waiters: VecDeque<Waiter>,
    settled: Vec<oneshot::Sender<()>>,
    /// Times of recent crashes, for the restart limit.
    crashes: VecDeque<Instant>,
    restarts: u64,
    attempt: u32,
    restart_at: Option<Instant>,
    failed: Option<SwarmError>,
    recorder: Recorder,
    breaker: Breaker,
    shutdown: Option<Vec<oneshot::Sender<()>>>,
    sampler: recycle::Sampler,
    fast: Arc<FastPath>,
    /// The ledger's other buffer, empty between bookings.
    spare: Vec<Done>,
}

/// A caller waiting for an agent, already admitted by the breaker.
struct Waiter {
    reply: oneshot::Sender<Result<Lease, SwarmError>>,
    permit: Permit,
    /// When it gives up with `Overloaded` (`queue_timeout` after it asked).
    deadline: Instant,
}

impl Supervisor {
    /// Starts the supervisor of `role` on the current runtime.
    pub(crate) fn spawn(
        role: Arc<RoleConfig>,
        tx: mpsc::UnboundedSender<Msg>,
        rx: mpsc::UnboundedReceiver<Msg>,
        events: broadcast::Sender<Event>,
        fast: Arc<FastPath>,
    ) {
        let breaker = Breaker::new(role.breaker.clone());
        recycle::warn_if_cgroups_unavailable(&role);
        let supervisor = Supervisor {
            role,
            tx,
            rx,
            events,
            slots: BTreeMap::new(),
            next_id: 1,
            waiters: VecDeque::new(),
            settled: Vec::new(),
            crashes: VecDeque::new(),
            restarts: 0,
            attempt: 0,
            restart_at: None,
            failed: None,
            recorder: Recorder::default(),
            breaker,
            shutdown: None,
            sampler: recycle::Sampler::default(),
            fast,
            spare: Vec::new(),
        };
        tokio::spawn(supervisor.run());
    }

    async fn run(mut self) {
        self.grow();
        let mut housekeeping = tokio::time::interval(HOUSEKEEPING);
        housekeeping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The queue's one timer, armed for the oldest waiter only while some
        // wait: an acquire served at once (the usual case) registers no timer.
        let queue_timer = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(queue_timer);
        let mut armed: Option<Instant> = None;
        loop {
            let oldest = self.waiters.front().map(|w| w.deadline);
            if oldest != armed {
                if let Some(at) = oldest {
                    queue_timer.as_mut().reset(at);
                }
                armed = oldest;
            }
            tokio::select! {
                Some(msg) = self.rx.recv() => self.handle(msg),
                _ = housekeeping.tick() => self.housekeep(),
                () = &mut queue_timer, if armed.is_some() => {
                    armed = None;
                    self.expire_waiters();
                }
            }
            self.publish_gate();
            if let Some(done) = &mut self.shutdown
                && self.slots.is_empty()
            {
                for reply in done.drain(..) {
                    let _ = reply.send(());
                }
                tracing::debug!(role = %self.role.name, "pool stopped");
                return;
            }
        }
    }

    fn handle(&mut self, msg: Msg) {
        // Whatever the message, the leases callers gave back first: counts,
        // stats and the breaker are as of now when it is handled.
        self.book();
        match msg {
            Msg::Wake => {}
            Msg::Acquire(reply) => match self.admit() {
                Ok(permit) => {
                    let deadline = Instant::now() + self.role.queue_timeout;
                    self.waiters.push_back(Waiter { reply, permit, deadline });
                    self.dispatch();
                }
                Err(err) => drop(reply.send(Err(err))),
            },
            Msg::Admit(reply) => {
                let admitted = self.admit();
                if let Err(Ok(permit)) = reply.send(admitted) {
                    self.judge(permit, Outcome::Cancelled, Duration::ZERO);
                }
            }
            Msg::Judge { permit, outcome, elapsed } => {
                self.recorder.record(outcome, elapsed);
                self.judge(permit, outcome, elapsed);
            }
            Msg::Unused(permit) => self.judge(permit, Outcome::Cancelled, Duration::ZERO),
            Msg::AcquireEach(reply) => {
                let leases = match self.refusal() {
                    Some(err) => Err(err),
                    None => {
                        let ready =
                            self.slots.values().filter(|s| s.state == State::Ready).filter_map(|s| s.seat.as_ref());
                        let leases = ready.map(|seat| {
                            self.fast.take_regardless(seat);
                            Lease::new(Arc::clone(seat), None, Arc::clone(&self.fast))
                        });
                        Ok(leases.collect())
                    }
                };
                let _ = reply.send(leases);
            }
            Msg::Started { id, result } => self.started(id, result),
            Msg::Exited { id, exit } => self.exited(id, exit),
            Msg::Usage { at, groups } => self.usage(at, groups),
            Msg::Settled(reply) => {
                self.settled.push(reply);
                self.check_settled();
            }
            Msg::Snapshot(reply) => {
                let _ = reply.send(self.snapshot());
            }
            Msg::Shutdown(reply) => {
                self.fast.stop();
                self.shutdown.get_or_insert_with(Vec::new).extend(reply);
                self.fail_waiters(&SwarmError::ShuttingDown);
                let ids: Vec<u64> = self.slots.keys().copied().collect();
                for id in ids {
                    self.stop(id);
                }
            }
        }
    }

    /// Books the leases callers gave back since the last time, in the order they ended.
    fn book(&mut self) {
        let mut done = std::mem::take(&mut self.spare);
        self.fast.take_ledger(&mut done);
        if done.is_empty() {
            self.spare = done;
            return;
        }
        for Done { id, outcome, elapsed, permit } in done.drain(..) {
            if let Some(permit) = permit {
                self.judge(permit, outcome, elapsed);
            }
            self.release(id, outcome, elapsed);
        }
        self.spare = done;
        self.dispatch();
    }

    /// Lets callers admit themselves while the breaker is closed and the role serves.
    fn publish_gate(&self) {
        let open = if self.refusal().is_none() { self.breaker.closed_generation() } else { None };
        self.fast.set_gate(open);
    }

    fn refusal(&self) -> Option<SwarmError> {
        if self.shutdown.is_some() {
            return Some(SwarmError::ShuttingDown);
        }
        self.failed.clone()
    }

    /// The breaker's word on one more call (a failed or stopping role refuses first).
    fn admit(&mut self) -> Result<Permit, SwarmError> {
        if let Some(err) = self.refusal() {
            return Err(err);
        }
        let admitted = self.breaker.admit(Instant::now().into_std());
        self.note_transitions();
        admitted.map_err(|open| SwarmError::CircuitOpen {
            role: self.role.name.clone(),
            state: open.state,
            retry_after: open.retry_after,
            last_failure: open.last_failure,
        })
    }

    /// Books a call's outcome with the breaker. Caller mistakes and cancelled
    /// calls (race losers) do not count; an agent's own application errors
    /// mean the agent works.
    fn judge(&mut self, permit: Permit, outcome: Outcome, elapsed: Duration) {
        let (verdict, detail) = match outcome {
            Outcome::Ok => (CallOutcome::Success, None),
            Outcome::Error(code::INTERNAL_ERROR) => (CallOutcome::Failure, Some("the agent answered -32603")),
            Outcome::Error(code::METHOD_NOT_FOUND | code::INVALID_PARAMS) => (CallOutcome::Ignored, None),
            Outcome::Error(_) => (CallOutcome::Success, None),
            Outcome::Timeout => (CallOutcome::Failure, Some("timeout")),
            Outcome::Crashed => (CallOutcome::Failure, Some("the agent crashed during the call")),
            Outcome::Cancelled => (CallOutcome::Ignored, None),
        };
        self.breaker.record(permit, verdict, elapsed, detail, Instant::now().into_std());
        self.note_transitions();
    }

    fn note_transitions(&mut self) {
        for t in self.breaker.take_transitions() {
            tracing::info!(role = %self.role.name, from = ?t.from, to = ?t.to, "circuit breaker");
            self.emit(|| Event::BreakerChanged { role: self.role.name.clone(), from: t.from, to: t.to });
        }
    }

    /// Answers `Overloaded` to the waiters whose `queue_timeout` has passed.
    /// Deadlines are `queue_timeout` after each ask, so the oldest are in front.
    fn expire_waiters(&mut self) {
        let now = Instant::now();
        while self.waiters.front().is_some_and(|w| w.deadline <= now) {
            let waiter = self.waiters.pop_front().expect("a front waiter was just seen");
            let err = SwarmError::Overloaded { role: self.role.name.clone(), waited: self.role.queue_timeout };
            let _ = waiter.reply.send(Err(err));
            self.judge(waiter.permit, Outcome::Cancelled, Duration::ZERO);
        }
        self.fast.set_waiting(self.waiters.len());
    }

    fn fail_waiters(&mut self, err: &SwarmError) {
        for waiter in std::mem::take(&mut self.waiters) {
            let _ = waiter.reply.send(Err(err.clone()));
            self.judge(waiter.permit, Outcome::Cancelled, Duration::ZERO);
        }
        self.fast.set_waiting(0);
    }

    /// Hands free agents to waiting callers, then starts agents for the rest.
    fn dispatch(&mut self) {
        // Published before looking for room: a release after this either
        // leaves room we find, or sees callers waiting and wakes us.
        self.fast.set_waiting(self.waiters.len());
        while let Some(waiter) = self.waiters.pop_front() {
            if waiter.reply.is_closed() {
                self.judge(waiter.permit, Outcome::Cancelled, Duration::ZERO);
                continue;
            }
            let Some(seat) = self.fast.take() else {
                self.waiters.push_front(waiter);
                break;
            };
            let lease = Lease::new(seat, Some(waiter.permit), Arc::clone(&self.fast));
            // A caller that gave up just now drops the lease, which releases it.
            let _ = waiter.reply.send(Ok(lease));
        }
        self.fast.set_waiting(self.waiters.len());
        self.grow();
    }

    fn release(&mut self, id: u64, outcome: Outcome, elapsed: Duration) {
        self.recorder.record(outcome, elapsed);
        let Some(slot) = self.slots.get_mut(&id) else { return };
        slot.calls += 1;
        slot.idle_since = Instant::now();
        if outcome == Outcome::Ok {
            self.attempt = 0;
        }
        let noisy = slot.agent.as_ref().is_some_and(|a| a.client.noise() > NOISE_LIMIT);
        let hung_or_dead = matches!(outcome, Outcome::Timeout | Outcome::Crashed);
        let serving = matches!(slot.state, State::Ready | State::Draining);
        let due = slot.retirement.due(slot.calls, Instant::now());
        if serving && (hung_or_dead || noisy) {
            let cause = if hung_or_dead { RecycleCause::Crash } else { RecycleCause::Noise };
            self.note_recycle(id, cause);
            if hung_or_dead {
                self.kill(id);
            } else {
                self.stop(id);
            }
        } else if let (State::Ready, Some(cause)) = (slot.state, due) {
            self.recycle(id, cause);
        } else if slot.state == State::Draining {
            self.finish_draining(id);
        }
        // A call is when memory grows: look at it now rather than at the next tick.
        self.check_after_call(id);
    }

    fn started(&mut self, id: u64, result: Result<Agent, StartFailure>) {
        match result {
            Ok(agent) => {
                let Some(slot) = self.slots.get_mut(&id) else { return };
                let pid = agent.pid;
                let seat = Arc::new(Seat::new(id, Arc::clone(&slot.name), &agent, slot.retirement.max_calls));
                slot.seat = Some(Arc::clone(&seat));
                slot.agent = Some(agent);
                slot.state = State::Ready;
                self.fast.seat(seat);
                slot.idle_since = Instant::now();
                self.emit(|| Event::AgentReady {
                    role: self.role.name.clone(),
                    agent: agent_name(&self.role.name, id),
                    pid,
                });
                if self.shutdown.is_some() {
                    self.stop(id);
                }
            }
            Err(failure) => {
                self.slots.remove(&id);
                tracing::warn!(role = %self.role.name, reason = %failure.reason, "agent failed to start");
                self.crashed(failure.reason, failure.stderr_tail);
            }
        }
        // A replacement is ready, or will not be: the agents it replaces may go.
        self.finish_all_draining();
        self.check_settled();
        self.dispatch();
    }

    fn exited(&mut self, id: u64, exit: Exit) {
        self.fast.withdraw(id);
        let serving = self.slots.get(&id).is_some_and(|s| matches!(s.state, State::Ready | State::Draining));
        if !exit.expected && self.shutdown.is_none() && serving {
            self.note_recycle(id, RecycleCause::Crash);
        }
        let Some(slot) = self.slots.remove(&id) else { return };
        let pid = slot.agent.as_ref().map_or(0, |a| a.pid);
        self.emit(|| Event::AgentExited {
            role: self.role.name.clone(),
            agent: agent_name(&self.role.name, id),
            pid,
            status: exit.status.clone(),
            expected: exit.expected,
        });
        if !exit.expected && self.shutdown.is_none() {
            tracing::warn!(role = %self.role.name, agent = id, pid, status = %exit.status, "agent exited unexpectedly");
            self.crashed(exit.status, exit.stderr_tail);
        }
        self.finish_all_draining();
        self.check_settled();
        self.dispatch();
    }

    /// Books a crash: back off before the next start, or fail the role.
    fn crashed(&mut self, last_exit: String, stderr_tail: String) {
        let now = Instant::now();
        self.crashes.push_back(now);
        while self.crashes.front().is_some_and(|t| now.duration_since(*t) > RESTART_WINDOW) {
            self.crashes.pop_front();
        }
        self.restarts += 1;
        if self.crashes.len() > RESTART_LIMIT && self.failed.is_none() {
            let err = SwarmError::RoleFailed {
                role: self.role.name.clone(),
                restarts: self.crashes.len(),
                last_exit,
                stderr_tail,
            };
            tracing::error!(role = %self.role.name, "{err}");
            self.emit(|| Event::RoleFailed { role: self.role.name.clone(), reason: err.to_string() });
            self.fail_waiters(&err);
            self.breaker.force_open(&err.to_string(), Instant::now().into_std());
            self.note_transitions();
            self.failed = Some(err);
            return;
        }
        let ceiling = BACKOFF_BASE.saturating_mul(1 << self.attempt.min(16)).min(BACKOFF_CAP);
        let delay = ceiling.mul_f64(fastrand::f64());
        self.attempt += 1;
        self.restart_at = Some(now + delay);
        self.emit(|| Event::AgentRestarting { role: self.role.name.clone(), delay_ms: delay.as_millis() as u64 });
    }

    /// Starts agents up to `min_warm`, and for callers that are waiting.
    fn grow(&mut self) {
        // Command roles keep no agents: each call starts its own process.
        if self.shutdown.is_some() || self.failed.is_some() || self.role.protocol == Protocol::Command {
            return;
        }
        if self.restart_at.is_some_and(|at| Instant::now() < at) {
            return;
        }
        let live = self.live();
        // `max_agents` bounds processes, not ready agents: one still stopping
        // holds a process (and maybe a hung call) until it is reaped, so it
        // counts, or a stream of timeouts becomes a fork storm (issue 19).
        let occupied = self.slots.len();
        let starting = self.slots.values().filter(|s| s.state == State::Starting).count();
        // Counting only open waiters would scan the queue on every acquire and
        // release; closed ones are dropped as dispatch reaches them, and an
        // overcount can only start an agent early, within max_agents.
        let for_waiters = self.waiters.len().div_ceil(self.role.concurrency).saturating_sub(starting);
        let wanted = self.role.min_warm.saturating_sub(live).max(for_waiters);
        for _ in 0..wanted.min(self.role.max_agents.saturating_sub(occupied)) {
            self.spawn_agent();
        }
    }

    /// Agents that serve or will: starting or ready, not recycled or stopping.
    fn live(&self) -> usize {
        self.slots.values().filter(|s| matches!(s.state, State::Starting | State::Ready)).count()
    }

    fn spawn_agent(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        let now = Instant::now();
        let slot = Slot {
            name: agent_name(&self.role.name, id).into(),
            state: State::Starting,
            agent: None,
            seat: None,
            calls: 0,
            born: now,
            idle_since: now,
            retirement: Retirement::draw(&self.role, now, (fastrand::f64(), fastrand::f64())),
            recycled: None,
            replacement: None,
            usage: None,
            leader_rss: 0,
            cpu: CpuMeter::default(),
        };
        self.slots.insert(id, slot);
        self.emit(|| Event::AgentStarting { role: self.role.name.clone(), agent: agent_name(&self.role.name, id) });
        let (role, tx) = (Arc::clone(&self.role), self.tx.clone());
        tokio::spawn(async move {
            let on_exit = {
                let tx = tx.clone();
                move |exit| drop(tx.send(Msg::Exited { id, exit }))
            };
            let result = launch::start(&role, on_exit).await;
            let _ = tx.send(Msg::Started { id, result });
        });
        id
    }

    fn stop(&mut self, id: u64) {
        let Some(slot) = self.slots.get_mut(&id) else { return };
        // A slot still starting is stopped by `started` once it is up.
        if let Some(agent) = slot.agent.as_mut() {
            slot.state = State::Stopping;
            self.fast.withdraw(id);
            agent.stop();
        }
    }

    /// Stops an agent that timed out or crashed mid-call without the stop
    /// ladder: a hung agent will not answer stdin EOF or SIGTERM in time, and
    /// while it stops it holds one of the role's `max_agents` places.
    fn kill(&mut self, id: u64) {
        let Some(slot) = self.slots.get_mut(&id) else { return };
        if let Some(agent) = slot.agent.as_mut() {
            slot.state = State::Stopping;
            self.fast.withdraw(id);
            agent.kill();
        }
    }

    fn housekeep(&mut self) {
        self.book();
        let now = Instant::now();
        self.breaker.tick(now.into_std());
        self.note_transitions();
        self.retire_old(now);
        self.sampler_tick(now);
        let live = self.live();
        let surplus = live.saturating_sub(self.role.min_warm);
        let idle: Vec<u64> = self
            .slots
            .iter()
            .filter(|(_, s)| s.state == State::Ready && s.in_flight() == 0)
            .filter(|(_, s)| now.duration_since(s.idle_since) >= self.role.idle_timeout)
            .map(|(id, _)| *id)
            .take(surplus)
            .collect();
        for id in idle {
            // A caller may have leased it since: only one still idle, out of the set, may stop.
            if !self.fast.withdraw_if_idle(id) {
                continue;
            }
            tracing::debug!(role = %self.role.name, agent = id, "stopping idle agent");
            self.stop(id);
        }
        self.dispatch();
    }

    fn check_settled(&mut self) {
        let ready = self.slots.values().filter(|s| s.state == State::Ready).count();
        let warm = ready >= self.role.min_warm || self.role.protocol == Protocol::Command;
        if warm || self.failed.is_some() || self.shutdown.is_some() {
            for reply in self.settled.drain(..) {
                let _ = reply.send(());
            }
        }
    }

    /// Sends an event only when someone listens: building one allocates.
    fn emit(&self, event: impl FnOnce() -> Event) {
        if self.events.receiver_count() > 0 {
            let _ = self.events.send(event());
        }
    }
}

fn agent_name(role: &str, id: u64) -> String {
    format!("{role}/{id}")
}
