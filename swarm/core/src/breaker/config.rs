//! A breaker's thresholds and timings, and which of them a config may hold.

use std::time::Duration;

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

    pub(super) fn effective_window(&self) -> usize {
        self.window.max(1)
    }

    pub(super) fn effective_min_calls(&self) -> usize {
        self.min_calls.clamp(1, self.effective_window())
    }

    pub(super) fn effective_probes(&self) -> usize {
        self.half_open_probes.max(1)
    }

    /// The upper bound of the open period after `reopens` consecutive re-opens.
    pub fn open_ceiling(&self, reopens: u32) -> Duration {
        let factor = 1u32.checked_shl(reopens.min(31)).unwrap_or(u32::MAX);
        self.open_for.saturating_mul(factor).min(self.open_for_max)
    }
}
