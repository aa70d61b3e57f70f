//! `skep.toml`: the roles skep runs and how each is pooled. Every error names
//! the file, the line and column, and the dotted key: a pool that refuses to
//! start should say exactly which line to fix.
//!
//! - `mod.rs`: the loaded types.
//! - `load.rs`: reading a file and building each role, with its range checks.
//! - `raw.rs`: the file's shape as serde sees it (every key optional and spanned).
//! - `units.rs`: durations, sizes and counts, with their bounds.

use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use crate::preload;

use crate::breaker::BreakerConfig;
use crate::diagnostic::FileError;

mod load;
mod raw;
mod units;

#[cfg(test)]
mod tests;

pub use units::{MAX_DURATION, MAX_SIZE, parse_duration, parse_size};

/// A loaded, validated skep.toml.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The roles, sorted by name (a `BTreeMap`), so start-up and listings are deterministic.
    pub roles: BTreeMap<String, RoleConfig>,
    /// The file the config was loaded from; `None` when parsed from text.
    pub source: Option<PathBuf>,
    /// `[observe] socket`: where to serve the observe socket, resolved against the config's directory.
    pub observe: Option<PathBuf>,
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
    /// Calls after which an agent is recycled.
    pub max_calls: u64,
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
            idle_timeout: Duration::from_secs(300),
            protocol: Protocol::JsonRpc,
            shell: false,
            idempotent: Vec::new(),
            cache_ttl: Duration::from_secs(600),
            cache_capacity: 10_000,
            cache_bytes: 64 * 1024 * 1024,
            route: Vec::new(),
            breaker: BreakerConfig::default(),
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
