//! Per-role counters and latency percentiles (an HDR histogram), recorded by
//! the role's supervisor, which is their only owner.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::breaker::BreakerSnapshot;
use crate::cache::CacheStats;
use serde::Serialize;

use crate::events::Outcome;
use crate::limits::RecycleCause;

/// Stats of every role.
#[derive(Debug, Clone, Serialize)]
pub struct SwarmStats {
    /// One entry per role, by name.
    pub roles: Vec<RoleStats>,
    /// The remote workers heard from lately; absent without a cluster.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workers: Option<Vec<crate::remote::RemoteWorker>>,
}

/// Stats of one role.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RoleStats {
    /// The role's name.
    pub role: String,
    /// Agents by state.
    pub agents: AgentCounts,
    /// Calls that reached an agent, whatever their outcome (cancelled ones too).
    pub calls: u64,
    /// Of those, calls their caller gave up on (cancelled, dropped, race losers).
    pub cancelled: u64,
    /// Failed calls by JSON-RPC code.
    pub errors: BTreeMap<i32, u64>,
    /// Call latency in microseconds.
    pub latency_us: Latency,
    /// Calls waiting for a free agent right now.
    pub queue_depth: usize,
    /// Agents restarted after a crash.
    pub restarts: u64,
    /// Agents replaced, by cause.
    pub recycled: Recycled,
    /// Resident memory of all the role's agents (their process groups), at the last sample.
    pub rss_bytes: u64,
    /// CPU use of all the role's agents between the last two samples, in percent of one CPU.
    pub cpu_percent: f64,
    /// Whether the role hit its restart limit.
    pub failed: bool,
    /// The role's circuit breaker.
    pub breaker: BreakerSnapshot,
    /// The role's idempotent cache, when it has one.
    pub cache: Option<CacheStats>,
}

/// Agents of a role by state.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct AgentCounts {
    /// Being started.
    pub starting: usize,
    /// Ready with no call in flight.
    pub idle: usize,
    /// With at least one call in flight.
    pub busy: usize,
    /// Recycled: finishing their calls, taking no new ones.
    pub recycling: usize,
    /// Being stopped.
    pub stopping: usize,
}

/// Agents replaced, by why.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Recycled {
    /// Past their `max_calls`.
    pub calls: u64,
    /// Past their `max_lifetime`.
    pub lifetime: u64,
    /// Past `max_rss`.
    pub memory: u64,
    /// Crashed, hung past a timeout, or died during a call.
    pub crash: u64,
    /// Too much non-protocol output.
    pub noise: u64,
}

/// Latency percentiles in microseconds (0 before the first call).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Latency {
    pub p50: u64,
    pub p95: u64,
    pub p99: u64,
    pub max: u64,
}

/// What the supervisor records as calls end.
#[derive(Debug)]
pub(crate) struct Recorder {
    latency: Histogram<u64>,
    calls: u64,
    cancelled: u64,
    errors: BTreeMap<i32, u64>,
    recycled: Recycled,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder {
            // 1 µs to 1 hour at 3 significant digits: ~200 KiB per role.
            latency: Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("static bounds are valid"),
            calls: 0,
            cancelled: 0,
            errors: BTreeMap::new(),
            recycled: Recycled::default(),
        }
    }
}

impl Recorder {
    pub(crate) fn record(&mut self, outcome: Outcome, elapsed: Duration) {
        self.calls += 1;
        if outcome == Outcome::Cancelled {
            self.cancelled += 1;
            return; // the caller left: no latency was measured, and it is not an error
        }
        self.latency.saturating_record((elapsed.as_micros() as u64).max(1));
        let code = match outcome {
            Outcome::Ok | Outcome::Cancelled => return,
            Outcome::Error(code) => code,
            Outcome::Timeout => skep_bridge::code::TIMEOUT,
            Outcome::Crashed => skep_bridge::code::AGENT_CRASHED,
        };
        *self.errors.entry(code).or_default() += 1;
    }

    pub(crate) fn recycled(&mut self, cause: RecycleCause) {
        let r = &mut self.recycled;
        *match cause {
            RecycleCause::Calls => &mut r.calls,
            RecycleCause::Lifetime => &mut r.lifetime,
            RecycleCause::Memory => &mut r.memory,
            RecycleCause::Crash => &mut r.crash,
            RecycleCause::Noise => &mut r.noise,
        } += 1;
    }

    pub(crate) fn snapshot(
        &self,
        role: &str,
        agents: AgentCounts,
        queue_depth: usize,
        restarts: u64,
        failed: bool,
        breaker: BreakerSnapshot,
    ) -> RoleStats {
        let at = |q| if self.calls == 0 { 0 } else { self.latency.value_at_quantile(q) };
        RoleStats {
            role: role.to_owned(),
            agents,
            calls: self.calls,
            cancelled: self.cancelled,
            errors: self.errors.clone(),
            latency_us: Latency { p50: at(0.5), p95: at(0.95), p99: at(0.99), max: self.latency.max() },
            queue_depth,
            restarts,
            recycled: self.recycled,
            rss_bytes: 0,
            cpu_percent: 0.0,
            failed,
            breaker,
            cache: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_error_and_cancelled_counts() {
        let mut r = Recorder::default();
        for us in 1..=100 {
            r.record(Outcome::Ok, Duration::from_micros(us * 10));
        }
        r.record(Outcome::Timeout, Duration::from_secs(1));
        r.record(Outcome::Error(-32050), Duration::from_micros(5));
        r.record(Outcome::Cancelled, Duration::from_secs(9));
        let breaker = crate::breaker::Breaker::new(Default::default()).snapshot(std::time::Instant::now());
        let s = r.snapshot("x", AgentCounts::default(), 0, 0, false, breaker);
        assert_eq!((s.calls, s.cancelled), (103, 1));
        assert_eq!(s.errors, BTreeMap::from([(-32050, 1), (-32001, 1)]));
        assert!((495..=510).contains(&s.latency_us.p50), "{:?}", s.latency_us);
        // The timeout is measured; the cancelled call's 9 s are not.
        assert!((999_000..9_000_000).contains(&s.latency_us.max), "{:?}", s.latency_us);
    }
}
