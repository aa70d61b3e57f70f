//! Keeping long-lived agents in bounds: when an agent is recycled and why
//! (`max_calls`, `max_lifetime` with their jitter, `max_rss`), what each
//! agent's process group costs (`usage.rs`), and whether cgroup v2 limits can
//! be had on this machine (`cgroup.rs`). The kernel limits themselves
//! (`rlimits`) are set by the process runner (`process/rlimits.rs`).
//!
//! Everything here is plain synchronous code on an injected clock and
//! injected random numbers; the supervisor owns the state and does the I/O.

use std::time::Duration;

use bytesize::ByteSize;
use serde::Serialize;
use tokio::time::Instant;

use crate::config::RoleConfig;

mod cgroup;
mod usage;

pub(crate) use cgroup::{Delegation, detect as detect_cgroup_delegation};
pub(crate) use usage::{CpuMeter, GroupUsage, leader_rss, sample_groups, ticks_per_second};

/// Why an agent was replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum RecycleCause {
    /// It reached its (jittered) `max_calls`.
    Calls,
    /// It reached its (jittered) `max_lifetime`.
    Lifetime,
    /// Its process group's resident memory went past `max_rss`.
    Memory,
    /// It crashed, hung past a call's timeout, or died mid-call.
    Crash,
    /// It wrote too many non-protocol lines on stdout.
    Noise,
}

/// An agent's own recycle bounds, drawn once when it starts: the role's
/// `max_calls` and `max_lifetime`, each lowered by up to `recycle_jitter`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Retirement {
    /// Calls after which the agent is recycled.
    pub max_calls: u64,
    /// When the agent is recycled for age.
    pub retire_at: Option<Instant>,
}

impl Retirement {
    /// The bounds of an agent born at `born`; `draws` are two uniform numbers
    /// in [0, 1) (from `fastrand` outside tests).
    pub(crate) fn draw(role: &RoleConfig, born: Instant, draws: (f64, f64)) -> Retirement {
        let jitter = role.recycle_jitter.clamp(0.0, 1.0);
        // Lowered, never raised: the configured value stays a bound an operator can rely on.
        let off = (role.max_calls as f64 * jitter * draws.0).floor() as u64;
        let max_calls = role.max_calls.saturating_sub(off).max(1);
        let retire_at = role.max_lifetime.map(|life| born + life.mul_f64(1.0 - jitter * draws.1));
        Retirement { max_calls, retire_at }
    }

    /// Why the agent is due for a recycle after `calls` calls at `now`, if it is.
    pub(crate) fn due(&self, calls: u64, now: Instant) -> Option<RecycleCause> {
        if calls >= self.max_calls {
            return Some(RecycleCause::Calls);
        }
        self.retire_at.filter(|at| now >= *at).map(|_| RecycleCause::Lifetime)
    }
}

/// What the log, the event and `skep stats` say about a recycle.
pub(crate) fn describe(cause: RecycleCause, role: &RoleConfig, calls: u64, age: Duration, rss: u64) -> String {
    match cause {
        RecycleCause::Calls => format!("{calls} calls reached its max_calls (role max_calls {})", role.max_calls),
        RecycleCause::Lifetime => {
            let max =
                role.max_lifetime.map_or_else(|| "none".to_owned(), |d| humantime::format_duration(d).to_string());
            let age = humantime::format_duration(Duration::from_secs(age.as_secs()));
            format!("lifetime {age} reached its max_lifetime (role max_lifetime {max})")
        }
        RecycleCause::Memory => {
            let max = role.max_rss.map_or(0, |m| m);
            format!("RSS {} over max_rss {}", size(rss), size(max))
        }
        RecycleCause::Crash => "crashed, hung or died during a call".to_owned(),
        RecycleCause::Noise => "too much non-protocol output on stdout".to_owned(),
    }
}

/// "1.2 GiB", "150.0 MiB".
pub(crate) fn size(bytes: u64) -> String {
    ByteSize::b(bytes).display().iec().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn role(max_calls: u64, lifetime: Option<Duration>, jitter: f64) -> RoleConfig {
        let mut role = RoleConfig::with_command("r", vec!["agent".into()]);
        role.max_calls = max_calls;
        role.max_lifetime = lifetime;
        role.recycle_jitter = jitter;
        role
    }

    #[test]
    fn jitter_lowers_the_bounds_by_at_most_its_fraction_and_never_raises_them() {
        let born = Instant::now();
        let hour = Duration::from_secs(3600);
        let r = role(1000, Some(hour), 0.1);
        let none = Retirement::draw(&r, born, (0.0, 0.0));
        assert_eq!(none, Retirement { max_calls: 1000, retire_at: Some(born + hour) });
        let most = Retirement::draw(&r, born, (0.999_999, 0.999_999));
        assert_eq!(most.max_calls, 901);
        let earliest = born + hour.mul_f64(0.9);
        assert!(most.retire_at.is_some_and(|at| at > earliest && at < born + hour), "{most:?}");
        let half = Retirement::draw(&r, born, (0.5, 0.5));
        assert_eq!(half.max_calls, 950);
        assert_eq!(half.retire_at, Some(born + hour.mul_f64(0.95)));
        // Small bounds stay exact, and no draw takes an agent below one call.
        assert_eq!(Retirement::draw(&role(3, None, 0.1), born, (0.999, 0.0)).max_calls, 3);
        assert_eq!(Retirement::draw(&role(1, None, 0.99), born, (0.999, 0.0)).max_calls, 1);
        assert_eq!(Retirement::draw(&role(10, None, 0.0), born, (0.999, 0.999)).max_calls, 10);
    }

    #[test]
    fn a_pool_of_agents_spreads_its_recycles_over_the_jitter_window() {
        let born = Instant::now();
        let hour = Duration::from_secs(3600);
        let r = role(10_000, Some(hour), 0.1);
        let mut rng = fastrand::Rng::with_seed(7);
        let bounds: Vec<Retirement> = (0..20).map(|_| Retirement::draw(&r, born, (rng.f64(), rng.f64()))).collect();
        let distinct: std::collections::BTreeSet<u64> = bounds.iter().map(|b| b.max_calls).collect();
        assert!(distinct.len() > 15, "{distinct:?}");
        assert!(bounds.iter().all(|b| (9_000..=10_000).contains(&b.max_calls)));
    }

    #[test]
    fn an_agent_is_due_at_its_call_count_or_its_age_on_the_injected_clock() {
        let born = Instant::now();
        let life = Duration::from_secs(12 * 3600);
        let bounds = Retirement::draw(&role(100, Some(life), 0.1), born, (0.0, 0.5));
        let retire = born + life.mul_f64(0.95);
        assert_eq!(bounds.due(99, born), None);
        assert_eq!(bounds.due(100, born), Some(RecycleCause::Calls));
        assert_eq!(bounds.due(0, retire - Duration::from_millis(1)), None);
        assert_eq!(bounds.due(0, retire), Some(RecycleCause::Lifetime));
        assert_eq!(bounds.due(100, retire), Some(RecycleCause::Calls), "calls are named first");
        let unbounded = Retirement::draw(&role(100, None, 0.1), born, (0.0, 0.5));
        assert_eq!(unbounded.due(0, born + Duration::from_secs(30 * 24 * 3600)), None);
    }

    #[test]
    fn a_memory_recycle_says_how_much_over_what() {
        let mut r = role(10, None, 0.1);
        r.max_rss = Some(1 << 30);
        let said = describe(RecycleCause::Memory, &r, 3, Duration::ZERO, (1 << 30) + (1 << 28));
        assert_eq!(said, "RSS 1.2 GiB over max_rss 1.0 GiB");
    }
}
