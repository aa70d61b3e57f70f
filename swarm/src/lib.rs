//! The skep orchestrator.
//!
//! # Layout
//! - `config.rs`: loading and validating `skep.toml`.
//! - `process.rs`: spawning an agent in its own process group, watching it exit, the stop ladder.
//! - `stderr_ring.rs`: the bounded ring an agent's stderr drains into.
//! - `bin/skep-test-agent.rs`: a misbehaving agent for tests, its behaviour chosen by flags.

mod config;
mod process;
mod stderr_ring;

pub use config::{Config, ConfigError, Handshake, RoleConfig, is_valid_name, parse_duration};
pub use process::{AgentProcess, SpawnError, SpawnSpec, StopOutcome, describe_exit};
pub use stderr_ring::{STDERR_RING_CAPACITY, StderrTail};
