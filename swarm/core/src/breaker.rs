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

/// Transitions kept for `take_transitions`; older ones are dropped if nobody takes them.
const MAX_PENDING_TRANSITIONS: usize = 64;
/// `lastFailure` is shown to people and sent over the wire; an agent's stderr tail can be large.
const MAX_DETAIL_BYTES: usize = 1024;

/// A breaker's thresholds and timings (`[roles.NAME.breaker]` in `skep.toml`).
#[derive(Debug, Clone, PartialEq)]
pub struct BreakerConfig {
    /// How many of the latest judged calls the rates are computed over.
    pub window: usize,
    /// No judgement until the window holds this many calls (at most `window`).
    pub min_calls: usize,
    /// Open when failures / calls in the window reach this.
    pub failure_rate: f64,
    /// A call at least this slow counts as slow (whether or not it failed).
    pub slow_call: Duration,
    /// Open when slow calls / calls in the window reach this; above 1.0 disables slow judging.
    pub slow_rate: f64,
    /// Ceiling of the first open period; doubles with each consecutive re-open.
    pub open_for: Duration,
    /// The ceiling never grows past this.
    pub open_for_max: Duration,
    /// Calls admitted as probes while half-open.
    pub half_open_probes: usize,
    /// A probe still unfinished this long after admission re-opens the breaker.
    pub probe_timeout: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            window: 20,
            min_calls: 10,
            failure_rate: 0.5,
            slow_call: Duration::from_secs(10),
            slow_rate: 1.0,
            open_for: Duration::from_secs(1),
            open_for_max: Duration::from_secs(60),
            half_open_probes: 2,
            probe_timeout: Duration::from_secs(20),
        }
    }
}

impl BreakerConfig {
    /// Checks the values a config loader should reject; the message names the key.
    ///
    /// The breaker itself copes with any values (a zero window acts as 1, `min_calls`
    /// is capped at `window`, zero probes act as 1), so this is for telling a person.
    pub fn validate(&self) -> Result<(), &'static str> {
        if self.window == 0 {
            return Err("window must be at least 1");
        }
        if self.min_calls > self.window {
            return Err("min_calls must not exceed window");
        }
        if !(self.failure_rate > 0.0 && self.failure_rate <= 1.0) {
            return Err("failure_rate must be above 0 and at most 1");
        }
        if self.slow_rate.is_nan() || self.slow_rate <= 0.0 {
            return Err("slow_rate must be above 0");
        }
        if self.half_open_probes == 0 {
            return Err("half_open_probes must be at least 1");
        }
        if self.open_for_max < self.open_for {
            return Err("open_for_max must not be below open_for");
        }
        Ok(())
    }

    fn effective_window(&self) -> usize {
        self.window.max(1)
    }

    fn effective_min_calls(&self) -> usize {
        self.min_calls.clamp(1, self.effective_window())
    }

    fn effective_probes(&self) -> usize {
        self.half_open_probes.max(1)
    }

    /// The upper bound of the open period after `reopens` consecutive re-opens.
    pub fn open_ceiling(&self, reopens: u32) -> Duration {
        let factor = 1u32.checked_shl(reopens.min(31)).unwrap_or(u32::MAX);
        self.open_for.saturating_mul(factor).min(self.open_for_max)
    }
}

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

    /// May a call go ahead now? Err when open (or half-open with all probe slots taken).
    pub fn admit(&mut self, now: Instant) -> Result<Permit, CircuitOpen> {
        self.expire_probes(now);
        if let Phase::Open { since, period } = self.phase {
            if now.saturating_duration_since(since) >= period {
                self.enter(Phase::HalfOpen { in_flight: Vec::new(), succeeded: 0, next_probe: 0 });
            }
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
        if self.window.len() >= self.config.effective_window() {
            if let Some(old) = self.window.pop_front() {
                self.window_failures -= usize::from(old.failed);
                self.window_slow -= usize::from(old.slow);
            }
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
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Small numbers so the tests read: a window of 4, judged from 4 calls.
    fn small() -> BreakerConfig {
        BreakerConfig {
            window: 4,
            min_calls: 4,
            failure_rate: 0.5,
            slow_call: ms(500),
            slow_rate: 1.0,
            open_for: ms(1000),
            open_for_max: ms(8000),
            half_open_probes: 2,
            probe_timeout: ms(3000),
        }
    }

    fn call(b: &mut Breaker, outcome: CallOutcome, elapsed: Duration, now: Instant) {
        let permit = b.admit(now).expect("breaker admits");
        b.record(permit, outcome, elapsed, Some("boom"), now);
    }

    /// Trips a closed breaker with failures and returns the open period it chose.
    fn trip(b: &mut Breaker, now: Instant) -> Duration {
        while b.state() == BreakerState::Closed {
            call(b, CallOutcome::Failure, ms(1), now);
        }
        b.admit(now).expect_err("just opened").retry_after
    }

    #[test]
    fn opens_at_the_failure_rate_only_after_min_calls() {
        let t = Instant::now();
        let mut b = Breaker::with_seed(BreakerConfig::default(), 1);
        for _ in 0..9 {
            call(&mut b, CallOutcome::Failure, ms(1), t);
        }
        assert_eq!(b.state(), BreakerState::Closed, "9 failures are below min_calls");
        call(&mut b, CallOutcome::Failure, ms(1), t);
        assert_eq!(b.state(), BreakerState::Open);

        // Exactly at the rate: 5 of 10.
        let mut b = Breaker::with_seed(BreakerConfig::default(), 1);
        for outcome in [CallOutcome::Success; 5].into_iter().chain([CallOutcome::Failure; 4]) {
            call(&mut b, outcome, ms(1), t);
        }
        assert_eq!(b.state(), BreakerState::Closed);
        call(&mut b, CallOutcome::Failure, ms(1), t);
        assert_eq!(b.state(), BreakerState::Open);
    }

    #[test]
    fn stays_closed_below_the_failure_rate() {
        let t = Instant::now();
        let mut b = Breaker::with_seed(BreakerConfig::default(), 1);
        for i in 0..100 {
            let outcome = if i % 5 >= 3 { CallOutcome::Failure } else { CallOutcome::Success };
            call(&mut b, outcome, ms(1), t);
        }
        assert_eq!(b.state(), BreakerState::Closed);
        let s = b.snapshot(t);
        assert_eq!((s.window_calls, s.window_failures), (20, 8));
    }

    #[test]
    fn the_window_slides() {
        let t = Instant::now();
        let mut b = Breaker::with_seed(BreakerConfig { failure_rate: 0.75, ..small() }, 1);
        use CallOutcome::{Failure as F, Success as S};
        for outcome in [F, F, S, S, S, F, F] {
            call(&mut b, outcome, ms(1), t);
            assert_eq!(b.state(), BreakerState::Closed);
        }
        assert_eq!(b.snapshot(t).window_failures, 2, "the first two failures slid out");
        call(&mut b, F, ms(1), t);
        assert_eq!(b.state(), BreakerState::Open);
    }

    #[test]
    fn slow_rate_opens_and_a_slow_failure_counts_twice() {
        let t = Instant::now();
        let mut b = Breaker::with_seed(BreakerConfig { slow_rate: 0.5, failure_rate: 1.0, ..small() }, 1);
        call(&mut b, CallOutcome::Success, ms(10), t);
        call(&mut b, CallOutcome::Failure, ms(500), t);
        let s = b.snapshot(t);
        assert_eq!((s.window_calls, s.window_failures, s.window_slow), (2, 1, 1));
        call(&mut b, CallOutcome::Success, ms(10), t);
        assert_eq!(b.state(), BreakerState::Closed);
        call(&mut b, CallOutcome::Success, ms(900), t);
        assert_eq!(b.state(), BreakerState::Open, "2 of 4 slow");
    }

    #[test]
    fn ignored_never_counts() {
        let t = Instant::now();
        let mut b = Breaker::with_seed(small(), 1);
        for _ in 0..50 {
            call(&mut b, CallOutcome::Ignored, ms(10_000), t);
        }
        let s = b.snapshot(t);
        assert_eq!((s.state, s.window_calls, s.window_slow, s.last_failure), (BreakerState::Closed, 0, 0, None));
    }

    #[test]
    fn open_rejects_with_a_shrinking_retry_after_then_half_opens() {
        let t = Instant::now();
        let mut b = Breaker::with_seed(small(), 7);
        let period = trip(&mut b, t);
        let refused = b.admit(t + ms(100)).expect_err("still open");
        assert_eq!(refused.state, BreakerState::Open);
        assert_eq!(refused.retry_after, period - ms(100));
        assert_eq!(refused.last_failure.as_deref(), Some("boom"));
        let almost = t + period - Duration::from_nanos(1);
        assert_eq!(b.admit(almost).expect_err("still open").retry_after, Duration::from_nanos(1));
        assert_eq!(b.snapshot(t).rejected, 3);
        assert_eq!(b.state(), BreakerState::Open, "half-open waits for the next admit");
        b.admit(t + period).expect("probe admitted");
        assert_eq!(b.state(), BreakerState::HalfOpen);
    }

    #[test]
    fn half_open_admits_exactly_the_probes_and_closes_when_all_succeed() {
        let t = Instant::now();
        let mut b = Breaker::with_seed(BreakerConfig { half_open_probes: 3, ..small() }, 3);
        let after = t + trip(&mut b, t);
        let probes: Vec<Permit> = (0..3).map(|_| b.admit(after).expect("probe slot")).collect();
        let full = b.admit(after).expect_err("slots taken");
        assert_eq!((full.state, full.retry_after), (BreakerState::HalfOpen, ms(3000)));
        for (i, p) in probes.into_iter().enumerate() {
            assert_eq!(b.state(), BreakerState::HalfOpen, "after {i} successes");
            b.record(p, CallOutcome::Success, ms(1), None, after);
        }
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(b.snapshot(after).window_calls, 0, "closing starts a fresh window");
    }

    #[test]
    fn an_ignored_probe_frees_its_slot_without_judging() {
        let t = Instant::now();
        let mut b = Breaker::with_seed(BreakerConfig { half_open_probes: 1, ..small() }, 3);
        let after = t + trip(&mut b, t);
        let probe = b.admit(after).expect("probe");
        b.admit(after).expect_err("one slot");
        b.record(probe, CallOutcome::Ignored, ms(1), None, after);
        assert_eq!(b.state(), BreakerState::HalfOpen);
        let probe = b.admit(after).expect("slot freed");
        b.record(probe, CallOutcome::Success, ms(1), None, after);
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn failing_probes_double_the_ceiling_up_to_the_cap_with_equal_jitter() {
        let mut firsts = Vec::new();
        for seed in 0..40 {
            let mut t = Instant::now();
            let cfg = small();
            let mut b = Breaker::with_seed(cfg.clone(), seed);
            let mut period = trip(&mut b, t);
            firsts.push(period);
            for reopens in 0..6u32 {
                let ceiling = cfg.open_ceiling(reopens);
                assert_eq!(ceiling, ms(1000 << reopens).min(ms(8000)));
                assert!(period >= ceiling / 2 && period <= ceiling, "seed {seed}: {period:?} vs {ceiling:?}");
                t += period;
                let probe = b.admit(t).expect("probe");
                b.record(probe, CallOutcome::Failure, ms(1), Some("still broken"), t);
                assert_eq!(b.state(), BreakerState::Open);
                period = b.admit(t).expect_err("re-opened").retry_after;
            }
        }
        firsts.sort();
        firsts.dedup();
        assert!(firsts.len() > 30, "jitter varies with the seed");
    }

    #[test]
    fn a_slow_probe_fails_unless_slow_judging_is_off() {
        let t = Instant::now();
        for (slow_rate, expected) in [(1.0, BreakerState::Open), (1.5, BreakerState::Closed)] {
            let mut b = Breaker::with_seed(BreakerConfig { half_open_probes: 1, slow_rate, ..small() }, 3);
            let after = t + trip(&mut b, t);
            let probe = b.admit(after).expect("probe");
            b.record(probe, CallOutcome::Success, ms(600), None, after);
            assert_eq!(b.state(), expected, "slow_rate {slow_rate}");
        }
    }

    #[test]
    fn a_hung_probe_reopens_on_tick() {
        let t = Instant::now();
        let mut b = Breaker::with_seed(BreakerConfig { slow_call: ms(60_000), ..small() }, 3);
        let after = t + trip(&mut b, t);
        let probe = b.admit(after).expect("probe");
        b.tick(after + ms(3000) - Duration::from_nanos(1));
        assert_eq!(b.state(), BreakerState::HalfOpen);
        b.tick(after + ms(3000));
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(b.snapshot(after).last_failure.as_deref(), Some("probe unfinished after 3s"));
        // Its late answer is stale and cannot close the breaker.
        b.record(probe, CallOutcome::Success, ms(3500), None, after + ms(3500));
        assert_eq!(b.state(), BreakerState::Open);
    }

    #[test]
    fn a_hung_probe_reopens_on_admit_and_on_a_late_record() {
        let t = Instant::now();
        // A slow_call beyond the probe timeout, so only the hang can fail the probe.
        let cfg = BreakerConfig { half_open_probes: 1, slow_call: ms(60_000), ..small() };
        let mut b = Breaker::with_seed(cfg.clone(), 3);
        let after = t + trip(&mut b, t);
        let _hung = b.admit(after).expect("probe");
        let refused = b.admit(after + ms(3000)).expect_err("re-opened");
        assert_eq!(refused.state, BreakerState::Open);

        let mut b = Breaker::with_seed(cfg, 3);
        let after = t + trip(&mut b, t);
        let probe = b.admit(after).expect("probe");
        b.record(probe, CallOutcome::Success, ms(3000), None, after + ms(3000));
        assert_eq!(b.state(), BreakerState::Open, "finished, but past the probe timeout");
    }

    #[test]
    fn force_open_stays_open_across_time_until_reset() {
        let t = Instant::now();
        let mut b = Breaker::with_seed(small(), 3);
        let period = trip(&mut b, t);
        b.force_open("restart limit reached", t);
        let later = t + period + Duration::from_secs(3600);
        let refused = b.admit(later).expect_err("forced");
        assert_eq!(refused.state, BreakerState::ForcedOpen);
        assert_eq!(refused.last_failure.as_deref(), Some("restart limit reached"));
        b.tick(later);
        assert_eq!(b.state(), BreakerState::ForcedOpen);
        assert_eq!(b.snapshot(later).retry_after_ms, None);
        b.reset();
        assert_eq!(b.state(), BreakerState::Closed);
        b.admit(later).expect("closed again");
        assert_eq!(b.snapshot(later).window_calls, 0);
    }

    #[test]
    fn stale_permits_do_not_judge() {
        let t = Instant::now();
        let mut b = Breaker::with_seed(BreakerConfig { half_open_probes: 2, ..small() }, 3);
        let from_closed = b.admit(t).expect("closed");
        let after = t + trip(&mut b, t);
        let before = b.snapshot(t);
        b.record(from_closed, CallOutcome::Failure, ms(1), Some("late"), t);
        assert_eq!(b.snapshot(t), before, "a late closed-state call changes nothing while open");

        // A probe from an earlier half-open round does not count in the next one.
        let a = b.admit(after).expect("probe a");
        let old = b.admit(after).expect("probe b");
        b.record(a, CallOutcome::Failure, ms(1), None, after);
        let again = after + b.admit(after).expect_err("re-opened").retry_after;
        let c = b.admit(again).expect("probe c");
        b.record(old, CallOutcome::Success, ms(1), None, again);
        b.record(c, CallOutcome::Success, ms(1), None, again);
        assert_eq!(b.state(), BreakerState::HalfOpen, "only one of two probes succeeded this round");
    }

    #[test]
    fn a_stale_closed_state_permit_is_not_a_probe() {
        let t = Instant::now();
        let mut b = Breaker::with_seed(small(), 3);
        let from_closed = b.admit(t).expect("closed");
        let after = t + trip(&mut b, t);
        let probe = b.admit(after).expect("probe");
        b.record(from_closed, CallOutcome::Success, ms(1), None, after);
        b.record(probe, CallOutcome::Success, ms(1), None, after);
        assert_eq!(b.state(), BreakerState::HalfOpen, "one real probe of two");
        let last = b.admit(after).expect("the stale success took no slot");
        b.record(last, CallOutcome::Success, ms(1), None, after);
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn transitions_are_reported_in_order() {
        use BreakerState::{Closed, ForcedOpen, HalfOpen, Open};
        let t = Instant::now();
        let mut b = Breaker::with_seed(BreakerConfig { half_open_probes: 1, ..small() }, 3);
        let mut now = t + trip(&mut b, t);
        let probe = b.admit(now).expect("probe");
        b.record(probe, CallOutcome::Failure, ms(1), None, now);
        now += b.admit(now).expect_err("open").retry_after;
        let probe = b.admit(now).expect("probe");
        b.record(probe, CallOutcome::Success, ms(1), None, now);
        b.force_open("gave up", now);
        b.force_open("gave up again", now);
        b.reset();
        let pairs: Vec<_> = b.take_transitions().into_iter().map(|tr| (tr.from, tr.to)).collect();
        assert_eq!(
            pairs,
            [
                (Closed, Open),
                (Open, HalfOpen),
                (HalfOpen, Open),
                (Open, HalfOpen),
                (HalfOpen, Closed),
                (Closed, ForcedOpen),
                (ForcedOpen, Closed)
            ]
        );
        assert!(b.take_transitions().is_empty());
        assert_eq!(b.snapshot(now).opened, 3);
    }

    #[test]
    fn snapshot_and_refusal_serialize_for_the_wire() {
        let t = Instant::now();
        let mut b = Breaker::with_seed(small(), 3);
        let period = trip(&mut b, t);
        let at = t + period - Duration::from_micros(1500);
        let json = serde_json::to_value(b.snapshot(at)).expect("serializes");
        let expected = serde_json::json!({
            "state": "open", "windowCalls": 4, "windowFailures": 4, "windowSlow": 0,
            "rejected": 1, "opened": 1, "retryAfterMs": 2, "lastFailure": "boom"
        });
        assert_eq!(json, expected);
        let refused = b.admit(at).expect_err("open");
        assert_eq!(refused.retry_after_ms(), 2, "rounded up");
        assert_eq!(refused.to_string(), "circuit open, retry after 2 ms");
        assert_eq!(serde_json::to_value(BreakerState::HalfOpen).expect("serializes"), "halfOpen");
    }

    #[test]
    fn failure_detail_is_bounded() {
        let t = Instant::now();
        let mut b = Breaker::with_seed(small(), 3);
        let long = "é".repeat(MAX_DETAIL_BYTES);
        let p = b.admit(t).expect("closed");
        b.record(p, CallOutcome::Failure, ms(1), Some(&long), t);
        let kept = b.snapshot(t).last_failure.expect("kept");
        assert!(kept.len() <= MAX_DETAIL_BYTES && kept.len() > MAX_DETAIL_BYTES - 2);
        let p = b.admit(t).expect("closed");
        b.record(p, CallOutcome::Failure, ms(1), None, t);
        assert_eq!(b.snapshot(t).last_failure.as_deref(), Some("call failed"));
    }

    #[test]
    fn validate_names_the_key() {
        assert_eq!(BreakerConfig::default().validate(), Ok(()));
        let bad = BreakerConfig { min_calls: 30, ..BreakerConfig::default() };
        assert_eq!(bad.validate(), Err("min_calls must not exceed window"));
        let bad = BreakerConfig { failure_rate: f64::NAN, ..BreakerConfig::default() };
        assert_eq!(bad.validate(), Err("failure_rate must be above 0 and at most 1"));
    }

    /// A plain re-implementation the breaker is checked against step by step. The
    /// jittered open period is not predicted: the model keeps the range it must lie
    /// in and narrows it to the exact end once the breaker reports a `retry_after`.
    mod model {
        use super::*;
        use proptest::prelude::*;

        #[derive(Debug, Clone, PartialEq)]
        enum State {
            Closed,
            Open { earliest: Instant, latest: Instant },
            HalfOpen { in_flight: Vec<(u64, Instant)>, succeeded: usize, next: u64 },
            Forced,
        }

        #[derive(Debug)]
        struct ModelPermit {
            generation: u64,
            probe: Option<u64>,
        }

        #[derive(Debug)]
        struct Model {
            cfg: BreakerConfig,
            state: State,
            generation: u64,
            window: Vec<(bool, bool)>,
            reopens: u32,
            transitions: Vec<(BreakerState, BreakerState)>,
        }

        impl Model {
            fn kind(&self) -> BreakerState {
                match self.state {
                    State::Closed => BreakerState::Closed,
                    State::Open { .. } => BreakerState::Open,
                    State::HalfOpen { .. } => BreakerState::HalfOpen,
                    State::Forced => BreakerState::ForcedOpen,
                }
            }

            fn enter(&mut self, state: State) {
                let from = self.kind();
                self.state = state;
                self.generation += 1;
                if from != self.kind() {
                    self.transitions.push((from, self.kind()));
                }
            }

            fn open(&mut self, now: Instant) {
                let mut ceiling = self.cfg.open_for;
                for _ in 0..self.reopens {
                    ceiling = ceiling.saturating_mul(2);
                }
                let ceiling = ceiling.min(self.cfg.open_for_max);
                self.enter(State::Open { earliest: now + ceiling / 2, latest: now + ceiling });
            }

            fn expire(&mut self, now: Instant) {
                if let State::HalfOpen { in_flight, .. } = &self.state {
                    if in_flight.iter().any(|(_, at)| now - *at >= self.cfg.probe_timeout) {
                        self.reopens += 1;
                        self.open(now);
                    }
                }
            }

            fn admit(&mut self, now: Instant, actual: &Result<Permit, CircuitOpen>) -> Option<ModelPermit> {
                self.expire(now);
                if let State::Open { earliest, latest } = self.state {
                    let over = now >= latest || (now >= earliest && actual.is_ok());
                    if over {
                        self.enter(State::HalfOpen { in_flight: Vec::new(), succeeded: 0, next: 0 });
                    }
                }
                let probes = self.cfg.half_open_probes.max(1);
                let generation = self.generation;
                match &mut self.state {
                    State::Closed => {
                        assert!(actual.is_ok(), "closed admits");
                        Some(ModelPermit { generation, probe: None })
                    }
                    State::HalfOpen { in_flight, succeeded, next } if in_flight.len() + *succeeded < probes => {
                        assert!(actual.is_ok(), "half-open has a free slot");
                        in_flight.push((*next, now));
                        *next += 1;
                        Some(ModelPermit { generation, probe: Some(*next - 1) })
                    }
                    State::HalfOpen { .. } => {
                        let refused = actual.as_ref().expect_err("half-open slots are taken");
                        assert_eq!(refused.state, BreakerState::HalfOpen);
                        None
                    }
                    State::Open { earliest, latest } => {
                        let refused = actual.as_ref().expect_err("open refuses");
                        assert_eq!(refused.state, BreakerState::Open);
                        let end = now + refused.retry_after;
                        assert!(*earliest <= end && end <= *latest && end > now, "open period out of range");
                        (*earliest, *latest) = (end, end);
                        None
                    }
                    State::Forced => {
                        assert_eq!(actual.as_ref().expect_err("forced refuses").state, BreakerState::ForcedOpen);
                        None
                    }
                }
            }

            fn record(&mut self, permit: ModelPermit, outcome: CallOutcome, elapsed: Duration, now: Instant) {
                self.expire(now);
                if permit.generation != self.generation {
                    return;
                }
                let probes = self.cfg.half_open_probes.max(1);
                let failed = outcome == CallOutcome::Failure;
                let slow = elapsed >= self.cfg.slow_call;
                match (&mut self.state, permit.probe) {
                    (State::HalfOpen { in_flight, succeeded, .. }, Some(id)) => {
                        in_flight.retain(|(p, _)| *p != id);
                        if outcome == CallOutcome::Ignored {
                            return;
                        }
                        if failed || (slow && self.cfg.slow_rate <= 1.0) {
                            self.reopens += 1;
                            self.open(now);
                        } else {
                            *succeeded += 1;
                            if *succeeded == probes {
                                self.reopens = 0;
                                self.window.clear();
                                self.enter(State::Closed);
                            }
                        }
                    }
                    (State::Closed, None) if outcome != CallOutcome::Ignored => {
                        self.window.push((failed, slow));
                        if self.window.len() > self.cfg.window.max(1) {
                            self.window.remove(0);
                        }
                        let n = self.window.len();
                        let failures = self.window.iter().filter(|c| c.0).count();
                        let slows = self.window.iter().filter(|c| c.1).count();
                        let min_calls = self.cfg.min_calls.max(1).min(self.cfg.window.max(1));
                        let judged = n >= min_calls
                            && (failures as f64 / n as f64 >= self.cfg.failure_rate
                                || slows as f64 / n as f64 >= self.cfg.slow_rate);
                        if judged {
                            self.reopens = 0;
                            self.open(now);
                        }
                    }
                    _ => {}
                }
            }
        }

        #[derive(Debug, Clone)]
        enum Op {
            Advance(u64),
            Admit,
            Record { pick: usize, outcome: CallOutcome, elapsed_ms: u64 },
            Tick,
            ForceOpen,
            Reset,
        }

        fn op() -> impl Strategy<Value = Op> {
            let outcome =
                prop_oneof![Just(CallOutcome::Success), Just(CallOutcome::Failure), Just(CallOutcome::Ignored)];
            prop_oneof![
                6 => (0u64..1500).prop_map(Op::Advance),
                8 => Just(Op::Admit),
                8 => (any::<usize>(), outcome, 0u64..1500)
                    .prop_map(|(pick, outcome, elapsed_ms)| Op::Record { pick, outcome, elapsed_ms }),
                2 => Just(Op::Tick),
                1 => Just(Op::ForceOpen),
                1 => Just(Op::Reset),
            ]
        }

        fn config() -> impl Strategy<Value = BreakerConfig> {
            (
                (0usize..6, 0usize..8, prop::sample::select(vec![0.25, 0.5, 1.0])),
                (300u64..1200, prop::sample::select(vec![0.5, 1.0, 1.5])),
                (50u64..1000, 1u32..9, 0usize..4, 200u64..3000),
            )
                .prop_map(
                    |((window, min_calls, failure_rate), (slow, slow_rate), (open, max, probes, probe_ms))| {
                        BreakerConfig {
                            window,
                            min_calls,
                            failure_rate,
                            slow_call: ms(slow),
                            slow_rate,
                            open_for: ms(open),
                            open_for_max: ms(open) * max,
                            half_open_probes: probes,
                            probe_timeout: ms(probe_ms),
                        }
                    },
                )
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(500))]

            #[test]
            fn breaker_matches_the_model(cfg in config(), seed in any::<u64>(), ops in prop::collection::vec(op(), 1..120)) {
                let mut now = Instant::now();
                let mut breaker = Breaker::with_seed(cfg.clone(), seed);
                let mut model = Model {
                    cfg, state: State::Closed, generation: 0, window: Vec::new(), reopens: 0, transitions: Vec::new(),
                };
                let mut permits: Vec<(Permit, ModelPermit)> = Vec::new();
                for op in ops {
                    match op {
                        Op::Advance(d) => now += ms(d),
                        Op::Admit => {
                            let actual = breaker.admit(now);
                            let expected = model.admit(now, &actual);
                            if let (Ok(permit), Some(m)) = (actual, expected) {
                                permits.push((permit, m));
                            }
                        }
                        Op::Record { pick, outcome, elapsed_ms } if !permits.is_empty() => {
                            let (permit, m) = permits.swap_remove(pick % permits.len());
                            breaker.record(permit, outcome, ms(elapsed_ms), Some("boom"), now);
                            model.record(m, outcome, ms(elapsed_ms), now);
                        }
                        Op::Record { .. } => {}
                        Op::Tick => {
                            breaker.tick(now);
                            model.expire(now);
                        }
                        Op::ForceOpen => {
                            breaker.force_open("restart limit", now);
                            if model.state != State::Forced {
                                model.enter(State::Forced);
                            }
                        }
                        Op::Reset => {
                            breaker.reset();
                            model.reopens = 0;
                            model.window.clear();
                            model.enter(State::Closed);
                        }
                    }
                    prop_assert_eq!(breaker.state(), model.kind());
                    let s = breaker.snapshot(now);
                    let failures = model.window.iter().filter(|c| c.0).count();
                    let slows = model.window.iter().filter(|c| c.1).count();
                    prop_assert_eq!((s.window_calls, s.window_failures, s.window_slow), (model.window.len(), failures, slows));
                    let taken: Vec<_> = breaker.take_transitions().into_iter().map(|t| (t.from, t.to)).collect();
                    prop_assert_eq!(taken, std::mem::take(&mut model.transitions));
                }
            }
        }
    }
}
