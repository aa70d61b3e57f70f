//! `skep.toml`: the roles skep runs and how each is pooled. Every error names
//! the file, the line and column, and the dotted key: a pool that refuses to
//! start should say exactly which line to fix.
//!
//! - `mod.rs`: the loaded types.
//! - `load.rs`: reading a file and building each role, with its range checks.
//! - `raw.rs`: the file's shape as serde sees it (every key optional and spanned).
//! - `cluster.rs`: `[cluster]`, the NATS server remote roles and workers meet on.
//! - `units.rs`: durations, sizes and counts, with their bounds.
//! - `mcp.rs`: `[mcp]` and `[[roles.NAME.tools]]`, the MCP gateway's naming.

use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use crate::preload;

use crate::breaker::BreakerConfig;
use crate::diagnostic::FileError;
use crate::process::Rlimits;

mod cluster;
mod load;
mod mcp;
mod raw;
mod units;

#[cfg(test)]
mod tests;

pub use cluster::{ClusterConfig, DEFAULT_CLUSTER_NAME, DEFAULT_HEARTBEAT, Secret, TlsConfig, is_subject_token};
pub use mcp::{DEFAULT_MAX_BODY, DEFAULT_SEPARATOR, McpConfig, Share, ToolConfig, is_valid_tool_name};
pub use units::{MAX_DURATION, MAX_SIZE, parse_duration, parse_size};

/// The default `recycle_jitter`: up to a tenth of `max_calls` and `max_lifetime` off per agent.
pub const DEFAULT_RECYCLE_JITTER: f64 = 0.1;

/// A loaded, validated skep.toml.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Config {
    /// The roles, sorted by name (a `BTreeMap`), so start-up and listings are deterministic.
    pub roles: BTreeMap<String, RoleConfig>,
    /// The file the config was loaded from; `None` when parsed from text.
    pub source: Option<PathBuf>,
    /// `[observe] socket`: where to serve the observe socket, resolved against the config's directory.
    pub observe: Option<PathBuf>,
    /// `[daemon]`: how the shared daemon for this config behaves.
    pub daemon: DaemonConfig,
    /// `[mcp]`: the daemon's MCP gateway.
    pub mcp: McpConfig,
    /// `[cluster]`: the NATS server remote roles and `skep worker` meet on; `None`: no cluster.
    pub cluster: Option<ClusterConfig>,
}

/// `[daemon]`: the shared daemon's own settings (docs/daemon.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DaemonConfig {
    /// With no client connected for this long, the daemon stops its agents and exits; `None`: never.
    pub idle_exit: Option<Duration>,
    /// Calls one client connection may have in flight; past it, -32004.
    pub max_in_flight_per_client: usize,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig { idle_exit: Some(Duration::from_secs(30 * 60)), max_in_flight_per_client: 256 }
    }
}

/// How an agent proves it is ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Handshake {
    /// The agent is ready as soon as it is spawned.
    #[default]
    None,
    /// The agent must answer an `initialize` call first.
    Initialize,
    /// The MCP stdio handshake: `initialize`, then `notifications/initialized`.
    Mcp,
}

/// How skep talks to a role's processes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Protocol {
    /// Warm agents speaking JSON-RPC 2.0 on stdin/stdout.
    #[default]
    JsonRpc,
    /// A fresh process per call: params on stdin, `{exitCode, stdout, stderr}` back.
    Command,
    /// A warm Python parent that has imported `modules`, forked per call to run `script` unchanged.
    Preload {
        /// The script each call runs as `__main__`, resolved against the config's directory.
        script: PathBuf,
        /// Modules the warm parent imports once.
        modules: Vec<String>,
    },
    /// Agents on other hosts: each call goes over NATS to a `skep worker` serving the role.
    Remote,
}

/// One role: how to start its agents and how to pool them.
#[derive(Debug, Clone, PartialEq)]
pub struct RoleConfig {
    /// The role's name, the key under `[roles]`.
    pub name: String,
    /// The argv to spawn; never passed through a shell.
    pub command: Vec<String>,
    /// Working directory, already resolved against the config file's directory.
    pub cwd: Option<PathBuf>,
    /// Variables added to the agent's otherwise cleared environment.
    pub env: BTreeMap<String, String>,
    /// Variables copied from skep's own environment.
    pub env_passthrough: Vec<String>,
    /// How an agent proves it is ready.
    pub handshake: Handshake,
    /// Agents started at start-up and kept warm.
    pub min_warm: usize,
    /// Upper bound on live agents.
    pub max_agents: usize,
    /// Calls in flight per agent.
    pub concurrency: usize,
    /// Per-call timeout.
    pub timeout: Duration,
    /// Time an agent has to become ready.
    pub startup_timeout: Duration,
    /// Time a call may wait for a free agent.
    pub queue_timeout: Duration,
    /// Calls after which an agent is recycled (lowered per agent by `recycle_jitter`).
    pub max_calls: u64,
    /// Age after which an agent is recycled (lowered per agent by `recycle_jitter`); `None`: no bound.
    pub max_lifetime: Option<Duration>,
    /// Up to this fraction of `max_calls` and `max_lifetime` is taken off at random per agent,
    /// so a pool's agents do not all recycle at once.
    pub recycle_jitter: f64,
    /// Resident memory of an agent's process group past which it is recycled; `None`: no bound.
    pub max_rss: Option<u64>,
    /// Kernel limits set on each of the role's processes before exec.
    pub rlimits: Rlimits,
    /// cgroup v2 `memory.max` per agent, where cgroups are delegated to skep's user.
    pub memory_max: Option<u64>,
    /// cgroup v2 `cpu.max` per agent in CPUs (0.5 is half of one), where delegated.
    pub cpu_max: Option<f64>,
    /// Idle time after which the pool shrinks back to `min_warm`.
    pub idle_timeout: Duration,
    /// Warm JSON-RPC agents, or a process per call.
    pub protocol: Protocol,
    /// Run `command` through `/bin/sh -c` (explicit opt-in; never otherwise).
    pub shell: bool,
    /// Methods whose successful results are cached.
    pub idempotent: Vec<String>,
    /// How long a cached result stays fresh.
    pub cache_ttl: Duration,
    /// Most cached results.
    pub cache_capacity: usize,
    /// Most bytes of cached results.
    pub cache_bytes: usize,
    /// Patterns (regular expressions) that route free text to this role.
    pub route: Vec<String>,
    /// The role's circuit breaker.
    pub breaker: BreakerConfig,
    /// What a call costs, for the profiler's estimates; none when not priced.
    pub cost: Option<Cost>,
    /// `[[roles.NAME.tools]]`: methods offered as MCP tools by the gateway.
    pub tools: Vec<ToolConfig>,
    /// How the MCP gateway shares the role's agents between sessions.
    pub share: Share,
    /// `spill = "remote"`: calls past the local pool's capacity go to the
    /// cluster's workers serving the role (docs/cluster.md).
    pub spill_remote: bool,
}

/// A price list, in whatever unit the user prices in: per second of call
/// time, per call, and per unit of each usage figure an agent reports in its
/// result's `_meta.usage` (for example `inputTokens`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Cost {
    /// Per second of the call's (or command's) duration.
    pub per_second: f64,
    /// Per call (or command run).
    pub per_call: f64,
    /// Per unit of a `_meta.usage` figure, by its name.
    pub usage: BTreeMap<String, f64>,
}

impl Cost {
    /// The estimate for one call of `seconds` that reported `usage`.
    pub fn estimate(&self, seconds: f64, usage: &BTreeMap<String, f64>) -> f64 {
        let priced: f64 = usage.iter().filter_map(|(k, n)| self.usage.get(k).map(|p| p * n)).sum();
        self.per_second * seconds + self.per_call + priced
    }
}

/// Why a config could not be loaded: unreadable, or wrong somewhere (file, line, key).
pub type ConfigError = FileError;

impl RoleConfig {
    /// A role with every default, for the given name and argv (used for built-in roles).
    pub fn with_command(name: &str, command: Vec<String>) -> RoleConfig {
        RoleConfig {
            name: name.to_owned(),
            command,
            cwd: None,
            env: BTreeMap::new(),
            env_passthrough: ["PATH", "HOME", "LANG"].map(String::from).to_vec(),
            handshake: Handshake::None,
            min_warm: 1,
            max_agents: 4,
            concurrency: 1,
            timeout: Duration::from_secs(30),
            startup_timeout: Duration::from_secs(10),
            queue_timeout: Duration::from_secs(5),
            max_calls: 10_000,
            max_lifetime: None,
            recycle_jitter: DEFAULT_RECYCLE_JITTER,
            max_rss: None,
            rlimits: Rlimits::default(),
            memory_max: None,
            cpu_max: None,
            idle_timeout: Duration::from_secs(300),
            protocol: Protocol::JsonRpc,
            shell: false,
            idempotent: Vec::new(),
            cache_ttl: Duration::from_secs(600),
            cache_capacity: 10_000,
            cache_bytes: 64 * 1024 * 1024,
            route: Vec::new(),
            breaker: BreakerConfig::default(),
            cost: None,
            tools: Vec::new(),
            share: Share::Pool,
            spill_remote: false,
        }
    }

    /// The argv actually spawned: `command`, `/bin/sh -c` with it joined
    /// when the role opted into a shell, or a preload role's warm parent.
    pub fn argv(&self) -> Vec<String> {
        if let Protocol::Preload { script, modules } = &self.protocol {
            return preload::argv(&self.command, script, modules, self.timeout);
        }
        match self.shell {
            false => self.command.clone(),
            true => vec!["/bin/sh".to_owned(), "-c".to_owned(), self.command.join(" ")],
        }
    }
}

/// Whether `name` is a valid role (or step/agent) name: [A-Za-z0-9._-]{1,64}.
pub fn is_valid_name(name: &str) -> bool {
    let allowed = |b: u8| b.is_ascii_alphanumeric() || b"._-".contains(&b);
    (1..=64).contains(&name.len()) && name.bytes().all(allowed)
}

fn is_env_name(name: &str) -> bool {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    !name.starts_with(|c: char| c.is_ascii_digit()) && !name.is_empty() && name.bytes().all(word)
}
