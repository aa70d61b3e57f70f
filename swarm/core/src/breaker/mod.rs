//! A per-role circuit breaker: plain synchronous state, judged over a count-based
//! window of the last calls.
//!
//! `Closed` lets every call through and records each judged outcome. Once the
//! window holds at least `min_calls`, a failure rate or slow-call rate at or above
//! its threshold trips it `Open` for a jittered period whose ceiling doubles on
//! each consecutive re-open. The first `admit` after the period moves it to
//! `HalfOpen`, which admits `half_open_probes` probes: all succeed and it closes
//! (fresh window; the next trip starts the backoff over); one fails, runs slow or hangs past
//! `probe_timeout` and it opens again. `ForcedOpen` (a role past its restart
//! limit) has no timed end and only `reset` leaves it.
//!
//! Time rule: nothing here reads a clock. Every method that depends on time takes
//! `now`, so tests drive the breaker with made-up instants and the owner decides
//! which clock is real.
//!
//! Stale permits: every state change starts a new generation. A permit's outcome
//! counts only in the generation it was admitted in; a call admitted while closed
//! that ends after the breaker opened, or any call ending after a probe round
//! finished, is dropped without touching the window, the probes or `lastFailure`.

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use serde::Serialize;

mod config;

pub use config::BreakerConfig;

/// Transitions kept for `take_transitions`; older ones are dropped if nobody takes them.
const MAX_PENDING_TRANSITIONS: usize = 64;
/// `lastFailure` is shown to people and sent over the wire; an agent's stderr tail can be large.
const MAX_DETAIL_BYTES: usize = 1024;

/// Where a breaker stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum BreakerState {
    /// Calls go through and are judged.
    Closed,
    /// Calls are refused until the open period ends.
    Open,
    /// A few probe calls go through; their outcome decides.
    HalfOpen,
    /// Refused until `reset`, whatever the time.
    ForcedOpen,
}

/// How an admitted call ended, as far as the breaker cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallOutcome {
    /// The agent answered.
    Success,
    /// Crash, EOF, timeout, malformed reply or an internal error from the agent.
    Failure,
    /// Not the agent's fault or not a real call (caller mistakes, cache hits, cancelled race losers).
    Ignored,
}

/// Why a call was refused.
#[derive(Debug, Clone, PartialEq)]
pub struct CircuitOpen {
    /// The state that refused the call.
    pub state: BreakerState,
    /// A hint for when to try again (for `ForcedOpen`, `open_for_max`: there is no timed end).
    pub retry_after: Duration,
    /// The last failure seen, for telling a person why.
    pub last_failure: Option<String>,
}

impl CircuitOpen {
    /// `retry_after` in whole milliseconds, rounded up so a caller never retries early.
    pub fn retry_after_ms(&self) -> u64 {
        ceil_ms(self.retry_after)
    }
}

impl fmt::Display for CircuitOpen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.state {
            BreakerState::ForcedOpen => write!(f, "circuit forced open until reset"),
            _ => write!(f, "circuit open, retry after {} ms", self.retry_after_ms()),
        }
    }
}

impl std::error::Error for CircuitOpen {}

/// A permission to make one call; pass it back to `record`. Not Clone.
///
/// Dropping a probe's permit without `record` keeps its slot taken until
/// `probe_timeout` re-opens the breaker; record `Ignored` for cancelled calls instead.
#[derive(Debug)]
pub struct Permit {
    generation: u64,
    probe: Option<u64>,
}

impl Permit {
    /// The permit `admit` gives while closed in `generation` (see `Breaker::closed_generation`).
    pub(crate) fn closed(generation: u64) -> Permit {
        Permit { generation, probe: None }
    }
}

/// A state change, for events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// The state left.
    pub from: BreakerState,
    /// The state entered.
    pub to: BreakerState,
}

/// Counters for stats.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BreakerSnapshot {
    /// The current state.
    pub state: BreakerState,
    /// Judged calls in the window.
    pub window_calls: usize,
    /// Failures in the window.
    pub window_failures: usize,
    /// Slow calls in the window (a slow failure counts here and as a failure).
    pub window_slow: usize,
    /// Calls refused since the breaker was made.
    pub rejected: u64,
    /// Times the breaker opened (timed or forced) since it was made.
    pub opened: u64,
    /// While timed-open, milliseconds until the next call may probe.
    pub retry_after_ms: Option<u64>,
    /// The last failure seen.
    pub last_failure: Option<String>,
}

/// A per-role circuit breaker.
#[derive(Debug)]
pub struct Breaker {
    config: BreakerConfig,
    phase: Phase,
    /// Bumped on every state change; see "Stale permits" in the module doc.
    generation: u64,
    window: VecDeque<Judged>,
    window_failures: usize,
    window_slow: usize,
    /// Re-opens from half-open since the last trip from closed; sets the backoff ceiling.
    reopens: u32,
    rejected: u64,
    opened: u64,
    last_failure: Option<String>,
    transitions: Vec<Transition>,
    rng: fastrand::Rng,
}

#[derive(Debug)]
enum Phase {
    Closed,
    // Start and length rather than a deadline, so no `Instant` arithmetic can overflow.
    Open { since: Instant, period: Duration },
    HalfOpen { in_flight: Vec<Probe>, succeeded: usize, next_probe: u64 },
    ForcedOpen,
}

#[derive(Debug)]
struct Probe {
    id: u64,
    admitted: Instant,
}

#[derive(Debug, Clone, Copy)]
struct Judged {
    failed: bool,
    slow: bool,
}

impl Breaker {
    /// A closed breaker whose jitter is seeded from entropy.
    pub fn new(config: BreakerConfig) -> Self {
        Self::with_rng(config, fastrand::Rng::new())
    }

    /// A closed breaker with a fixed jitter seed, for reproducible tests.
    pub fn with_seed(config: BreakerConfig, seed: u64) -> Self {
        Self::with_rng(config, fastrand::Rng::with_seed(seed))
    }

    fn with_rng(config: BreakerConfig, rng: fastrand::Rng) -> Self {
        Self {
            window: VecDeque::with_capacity(config.effective_window()),
            config,
            phase: Phase::Closed,
            generation: 0,
            window_failures: 0,
            window_slow: 0,
            reopens: 0,
            rejected: 0,
            opened: 0,
            last_failure: None,
            transitions: Vec::new(),
            rng,
        }
    }

    /// The breaker's config.
    pub fn config(&self) -> &BreakerConfig {
        &self.config
    }

    /// The current state (a timed open stays `Open` until the next `admit` after its period).
    pub fn state(&self) -> BreakerState {
        match self.phase {
            Phase::Closed => BreakerState::Closed,
            Phase::Open { .. } => BreakerState::Open,
            Phase::HalfOpen { .. } => BreakerState::HalfOpen,
            Phase::ForcedOpen => BreakerState::ForcedOpen,
        }
    }

    /// While closed, the generation a permit from `admit` would carry (`admit`
    /// changes nothing then), so a pool's fast path can admit calls without
    /// the breaker's owner; `None` in any other state.
    pub(crate) fn closed_generation(&self) -> Option<u64> {
        matches!(self.phase, Phase::Closed).then_some(self.generation)
    }

    /// May a call go ahead now? Err when open (or half-open with all probe slots taken).
    pub fn admit(&mut self, now: Instant) -> Result<Permit, CircuitOpen> {
        self.expire_probes(now);
        if let Phase::Open { since, period } = self.phase
            && now.saturating_duration_since(since) >= period
        {
            self.enter(Phase::HalfOpen { in_flight: Vec::new(), succeeded: 0, next_probe: 0 });
        }
        let generation = self.generation;
        let probes = self.config.effective_probes();
        let (state, retry_after) = match &mut self.phase {
            Phase::Closed => return Ok(Permit { generation, probe: None }),
            Phase::HalfOpen { in_flight, succeeded, next_probe } => {
                if in_flight.len() + *succeeded < probes {
                    let id = *next_probe;
                    *next_probe += 1;
                    in_flight.push(Probe { id, admitted: now });
                    return Ok(Permit { generation, probe: Some(id) });
                }
                // All slots are busy: by the earliest probe deadline the state changes at the latest.
                let timeout = self.config.probe_timeout;
                let wait = in_flight
                    .iter()
                    .map(|p| timeout.saturating_sub(now.saturating_duration_since(p.admitted)))
                    .min()
                    .unwrap_or(Duration::ZERO);
                (BreakerState::HalfOpen, wait)
            }
            Phase::Open { since, period } => {
                (BreakerState::Open, period.saturating_sub(now.saturating_duration_since(*since)))
            }
            Phase::ForcedOpen => (BreakerState::ForcedOpen, self.config.open_for_max),
        };
        self.rejected += 1;
        Err(CircuitOpen { state, retry_after, last_failure: self.last_failure.clone() })
    }

    /// The end of an admitted call. `failure_detail` is kept as lastFailure for Failure outcomes.
    pub fn record(
        &mut self,
        permit: Permit,
        outcome: CallOutcome,
        elapsed: Duration,
        failure_detail: Option<&str>,
        now: Instant,
    ) {
        // A probe finishing past its deadline hung as far as the breaker is concerned,
        // whether or not a `tick` noticed first; re-opening makes this permit stale.
        self.expire_probes(now);
        if permit.generation != self.generation || outcome == CallOutcome::Ignored {
            self.release_probe(permit);
            return;
        }
        let failed = outcome == CallOutcome::Failure;
        let slow = elapsed >= self.config.slow_call;
        if failed {
            self.last_failure = Some(truncate(failure_detail.unwrap_or("call failed")));
        }
        match permit.probe {
            None => {
                if matches!(self.phase, Phase::Closed) {
                    self.push_window(Judged { failed, slow });
                    if self.threshold_reached() {
                        // Tripping from closed starts the backoff over.
                        self.reopens = 0;
                        self.open(now);
                    }
                }
            }
            Some(id) => self.judge_probe(id, failed, slow, elapsed, now),
        }
    }

    /// Re-checks hung probes (call periodically).
    pub fn tick(&mut self, now: Instant) {
        self.expire_probes(now);
    }

    /// Opens the breaker with no timed end, until `reset` (a role past its restart limit).
    pub fn force_open(&mut self, reason: &str, _now: Instant) {
        self.last_failure = Some(truncate(reason));
        if !matches!(self.phase, Phase::ForcedOpen) {
            self.opened += 1;
            self.enter(Phase::ForcedOpen);
        }
    }

    /// Back to a fresh `Closed`: empty window, backoff reset; counters and lastFailure are kept.
    pub fn reset(&mut self) {
        self.clear_window();
        self.enter(Phase::Closed);
    }

    /// Transitions since the last call, oldest first (the owner turns them into events).
    pub fn take_transitions(&mut self) -> Vec<Transition> {
        std::mem::take(&mut self.transitions)
    }

    /// Counters for stats: calls judged, failures, slow, rejections, opens.
    pub fn snapshot(&self, now: Instant) -> BreakerSnapshot {
        let retry_after_ms = match self.phase {
            Phase::Open { since, period } => Some(ceil_ms(period.saturating_sub(now.saturating_duration_since(since)))),
            _ => None,
        };
        BreakerSnapshot {
            state: self.state(),
            window_calls: self.window.len(),
            window_failures: self.window_failures,
            window_slow: self.window_slow,
            rejected: self.rejected,
            opened: self.opened,
            retry_after_ms,
            last_failure: self.last_failure.clone(),
        }
    }

    /// A same-generation probe's outcome (never `Ignored`: that only frees the slot).
    fn judge_probe(&mut self, id: u64, failed: bool, slow: bool, elapsed: Duration, now: Instant) {
        let probes = self.config.effective_probes();
        // A slow probe fails: closing on it would only re-open on the slow rate a window later.
        let slow_fails = slow && self.config.slow_rate <= 1.0;
        let Phase::HalfOpen { in_flight, succeeded, .. } = &mut self.phase else { return };
        in_flight.retain(|p| p.id != id);
        if failed || slow_fails {
            if !failed {
                self.last_failure = Some(format!("probe took {elapsed:?}, slow_call is {:?}", self.config.slow_call));
            }
            self.reopen(now);
        } else {
            *succeeded += 1;
            if *succeeded >= probes {
                self.clear_window();
                self.enter(Phase::Closed);
            }
        }
    }

    /// Frees a same-generation probe's slot without judging; anything else is dropped.
    fn release_probe(&mut self, permit: Permit) {
        if permit.generation != self.generation {
            return;
        }
        if let (Phase::HalfOpen { in_flight, .. }, Some(id)) = (&mut self.phase, permit.probe) {
            in_flight.retain(|p| p.id != id);
        }
    }

    fn expire_probes(&mut self, now: Instant) {
        let timeout = self.config.probe_timeout;
        let hung = match &self.phase {
            Phase::HalfOpen { in_flight, .. } => {
                in_flight.iter().any(|p| now.saturating_duration_since(p.admitted) >= timeout)
            }
            _ => false,
        };
        if hung {
            self.last_failure = Some(format!("probe unfinished after {timeout:?}"));
            self.reopen(now);
        }
    }

    fn reopen(&mut self, now: Instant) {
        self.reopens = self.reopens.saturating_add(1);
        self.open(now);
    }

    fn open(&mut self, now: Instant) {
        // Equal jitter: never shorter than half the ceiling, so a fleet of callers
        // spreads out without any of them probing almost at once.
        let half = self.config.open_ceiling(self.reopens) / 2;
        let half_nanos = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX);
        let period = half + Duration::from_nanos(self.rng.u64(0..=half_nanos));
        self.opened += 1;
        self.enter(Phase::Open { since: now, period });
    }

    fn enter(&mut self, phase: Phase) {
        let from = self.state();
        self.phase = phase;
        self.generation += 1;
        let to = self.state();
        if from != to {
            if self.transitions.len() >= MAX_PENDING_TRANSITIONS {
                self.transitions.remove(0);
            }
            self.transitions.push(Transition { from, to });
        }
    }

    fn push_window(&mut self, call: Judged) {
        if self.window.len() >= self.config.effective_window()
            && let Some(old) = self.window.pop_front()
        {
            self.window_failures -= usize::from(old.failed);
            self.window_slow -= usize::from(old.slow);
        }
        self.window_failures += usize::from(call.failed);
        self.window_slow += usize::from(call.slow);
        self.window.push_back(call);
    }

    fn clear_window(&mut self) {
        self.window.clear();
        self.window_failures = 0;
        self.window_slow = 0;
    }

    fn threshold_reached(&self) -> bool {
        let calls = self.window.len();
        if calls < self.config.effective_min_calls() {
            return false;
        }
        let rate = |n: usize| n as f64 / calls as f64;
        rate(self.window_failures) >= self.config.failure_rate || rate(self.window_slow) >= self.config.slow_rate
    }
}

fn ceil_ms(d: Duration) -> u64 {
    u64::try_from(d.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX)
}

fn truncate(detail: &str) -> String {
    let mut end = detail.len().min(MAX_DETAIL_BYTES);
    while !detail.is_char_boundary(end) {
        end -= 1;
    }
    detail[..end].to_owned()
}

#[cfg(test)]
mod tests;
