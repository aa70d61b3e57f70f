//! The shape of `skep.toml` as serde reads it.
//!
//! Every key is optional and spanned so that defaults and range checks live in
//! `load.rs`, where each error can point at its line; adding a key is one field
//! here, one line there and one row in docs/config.md (a test checks the last).

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use super::units::{Count, Dur, DurOrNever, Size};
use crate::breaker::BreakerConfig;

pub(super) type Opt<T> = Option<Spanned<T>>;

/// The whole file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a skep.toml with [roles.NAME] tables")]
pub(super) struct RawConfig {
    pub roles: Opt<BTreeMap<String, Spanned<RawRole>>>,
    pub observe: Opt<RawObserve>,
    pub daemon: Opt<RawDaemon>,
    pub mcp: Opt<super::mcp::RawMcp>,
    pub cluster: Opt<RawCluster>,
}

/// `[cluster]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table such as [cluster]")]
pub(super) struct RawCluster {
    pub nats: Opt<String>,
    pub name: Opt<String>,
    pub token: Opt<String>,
    pub user: Opt<String>,
    pub password: Opt<String>,
    pub creds: Opt<String>,
    pub heartbeat: Opt<Dur>,
    pub tls: Opt<RawTls>,
}

/// `[cluster.tls]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table such as [cluster.tls]")]
pub(super) struct RawTls {
    pub required: Opt<bool>,
    pub ca: Opt<String>,
    pub cert: Opt<String>,
    pub key: Opt<String>,
}

/// `[daemon]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table such as [daemon]")]
pub(super) struct RawDaemon {
    pub idle_exit: Option<DurOrNever>,
    pub max_in_flight_per_client: Opt<Count>,
}

/// `[observe]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table such as [observe]")]
pub(super) struct RawObserve {
    pub socket: Opt<String>,
}

/// `[roles.NAME]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a role table such as [roles.worker]")]
pub(super) struct RawRole {
    pub command: Opt<Vec<String>>,
    pub cwd: Opt<String>,
    // Names are checked in load.rs; plain-string keys keep them in serde's key path.
    pub env: Opt<BTreeMap<String, Spanned<String>>>,
    pub env_passthrough: Opt<Vec<Spanned<String>>>,
    pub handshake: Opt<String>,
    pub min_warm: Opt<Count>,
    pub max_agents: Opt<Count>,
    pub concurrency: Opt<Count>,
    pub timeout: Opt<Dur>,
    pub startup_timeout: Opt<Dur>,
    pub queue_timeout: Opt<Dur>,
    pub max_calls: Opt<Count>,
    pub max_lifetime: Opt<Dur>,
    pub recycle_jitter: Opt<f64>,
    pub max_rss: Opt<Size>,
    pub rlimits: Opt<RawRlimits>,
    pub memory_max: Opt<Size>,
    pub cpu_max: Opt<f64>,
    pub idle_timeout: Opt<Dur>,
    pub protocol: Opt<String>,
    pub script: Opt<String>,
    pub preload: Opt<Vec<Spanned<String>>>,
    pub shell: Opt<bool>,
    pub idempotent: Opt<Vec<String>>,
    pub cache_ttl: Opt<Dur>,
    pub cache_capacity: Opt<Count>,
    pub cache_bytes: Opt<Size>,
    pub route: Opt<Vec<Spanned<String>>>,
    pub breaker: Opt<RawBreaker>,
    pub cost: Opt<RawCost>,
    pub tools: Opt<Vec<Spanned<super::mcp::RawTool>>>,
    pub share: Opt<String>,
    pub remote: Opt<bool>,
    pub spill: Opt<String>,
}

/// `[roles.NAME.cost]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table such as [roles.worker.cost]")]
pub(super) struct RawCost {
    pub per_second: Opt<f64>,
    pub per_call: Opt<f64>,
    pub usage: Opt<BTreeMap<String, Spanned<f64>>>,
}

/// `[roles.NAME.rlimits]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table such as rlimits = { nofile = 4096 }")]
pub(super) struct RawRlimits {
    pub nofile: Opt<Count>,
    pub data: Opt<Size>,
    pub cpu: Opt<Dur>,
    pub nproc: Opt<Count>,
}

/// `[roles.NAME.breaker]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table such as [roles.worker.breaker]")]
pub(super) struct RawBreaker {
    window: Option<Count>,
    min_calls: Option<Count>,
    failure_rate: Option<f64>,
    slow_call: Option<Dur>,
    slow_rate: Option<f64>,
    open_for: Option<Dur>,
    open_for_max: Option<Dur>,
    half_open_probes: Option<Count>,
    probe_timeout: Option<Dur>,
}

impl RawBreaker {
    /// The breaker's config with defaults filled in; `BreakerConfig::validate` judges the combination.
    pub fn build(self) -> BreakerConfig {
        let d = BreakerConfig::default();
        let count =
            |v: Option<Count>, default: usize| v.map_or(default, |v| usize::try_from(v.0).unwrap_or(usize::MAX));
        let dur = |v: Option<Dur>, default| v.map_or(default, |v| v.0);
        BreakerConfig {
            window: count(self.window, d.window),
            min_calls: count(self.min_calls, d.min_calls),
            failure_rate: self.failure_rate.unwrap_or(d.failure_rate),
            slow_call: dur(self.slow_call, d.slow_call),
            slow_rate: self.slow_rate.unwrap_or(d.slow_rate),
            open_for: dur(self.open_for, d.open_for),
            open_for_max: dur(self.open_for_max, d.open_for_max),
            half_open_probes: count(self.half_open_probes, d.half_open_probes),
            probe_timeout: dur(self.probe_timeout, d.probe_timeout),
        }
    }
}
