//! The breaker's rules on made-up instants.

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
            if let State::HalfOpen { in_flight, .. } = &self.state
                && in_flight.iter().any(|(_, at)| now - *at >= self.cfg.probe_timeout)
            {
                self.reopens += 1;
                self.open(now);
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
        let outcome = prop_oneof![Just(CallOutcome::Success), Just(CallOutcome::Failure), Just(CallOutcome::Ignored)];
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
                |((window, min_calls, failure_rate), (slow, slow_rate), (open, max, probes, probe_ms))| BreakerConfig {
                    window,
                    min_calls,
                    failure_rate,
                    slow_call: ms(slow),
                    slow_rate,
                    open_for: ms(open),
                    open_for_max: ms(open) * max,
                    half_open_probes: probes,
                    probe_timeout: ms(probe_ms),
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
