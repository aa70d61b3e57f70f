//! The skep orchestrator.
//!
//! # Layout
//! - `config.rs`: loading and validating `skep.toml`.

mod config;

pub use config::{Config, ConfigError, Handshake, RoleConfig, is_valid_name, parse_duration};
