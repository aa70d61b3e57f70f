//! The skep orchestrator.
//!
//! # Layout
//! - `config.rs`: loading and validating `skep.toml`.
//! - `breaker.rs`: the per-role circuit breaker, synchronous code on an injected clock.
//! - `cache/`: a role's idempotent-call cache: canonical key, byte-capped TTL store, single flight.
//! - `command.rs`: command roles, a fresh process per call.
//! - `swarm.rs`: the `Swarm` handle: start, call, roles, agents, stats, events, shutdown.
//! - `pool.rs`: the handle on a role's pool, its messages, and the lease a call holds.
//! - `supervisor.rs`: the one task per role that owns its agents, breaker and stats.
//! - `agent.rs`: starting one agent (process, connection, handshake) and watching it exit.
//! - `error.rs`: `SwarmError` and its one mapping to JSON-RPC error objects.
//! - `events.rs`: the typed event stream.
//! - `stats.rs`: per-role counters and latency percentiles.
//! - `coordinate.rs`: fan-out, race and broadcast over a role's agents.
//! - `route.rs`: picking a role for free text by its `route` patterns.
//! - `rpc.rs`: the sidecar's method table, and the read-only views it shares with the observe socket.
//! - `observe.rs`: the observe socket: read-only methods and events for `skep ls`, `stats` and `grid`.
//! - `observe_dir.rs`: the private per-user directory observe sockets live in.
//! - `demo.rs`: the built-in demo role and the demo agent's methods.
//! - `process.rs`: spawning an agent in its own process group, watching it exit, the stop ladder.
//! - `stderr_ring.rs`: the bounded ring an agent's stderr drains into.
//! - `workflow/`: workflows: a DAG of steps over the swarm, its scheduler, cache, profiler and report.
//! - `bin/skep-test-agent.rs`: a misbehaving agent for tests, its behaviour chosen by flags.

mod agent;
mod breaker;
mod cache;
mod command;
mod config;
mod coordinate;
mod demo;
mod error;
mod events;
mod observe;
mod observe_dir;
mod pool;
mod process;
mod route;
mod rpc;
mod stats;
mod stderr_ring;
mod supervisor;
mod swarm;
mod workflow;

pub use breaker::{
    Breaker, BreakerConfig, BreakerSnapshot, BreakerState, CallOutcome, CircuitOpen, Permit, Transition,
};
pub use cache::{CacheConfig, CacheKey, CacheStats, IdempotentCache, KeyError, MAX_DEPTH, ResultStore, canonical_json};
pub use config::{Config, ConfigError, Handshake, Protocol, RoleConfig, is_valid_name, parse_duration, parse_size};
pub use coordinate::{BroadcastReply, RaceCall, RaceWin, Settled};
pub use demo::{DEMO_ROLE, demo_agent_module, demo_config};
pub use error::{ALL_FAILED, SwarmError};
pub use events::{Event, Outcome};
pub use observe::{Observation, ObserveError, ObserveOptions, observe};
pub use observe_dir::{ensure_private_dir, observe_dir, uid};
pub use pool::{AGENT_STDERR_TAIL, AgentInfo};
pub use process::{AgentProcess, SpawnError, SpawnSpec, StopOutcome, describe_exit};
pub use rpc::{Sidecar, rpc_module};
pub use stats::{AgentCounts, Latency, RoleStats, SwarmStats};
pub use stderr_ring::{STDERR_RING_CAPACITY, StderrTail};
pub use swarm::{CallOptions, RoleInfo, Swarm};
pub use workflow::*;
