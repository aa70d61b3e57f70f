//! The skep orchestrator's core: roles and their config, warm pools, process
//! supervision, breakers, routing, fan-out and the event stream. Workflows
//! (`skep-workflow`) and the served method tables (`skep-service`) build on it.
//!
//! # Layout
//! - `config/`: loading and validating `skep.toml`: the types, the loader, the raw shape, units and bounds.
//! - `diagnostic.rs`: `Location` and `Invalid`, the one "this file is wrong here" error of skep.toml and workflows.
//! - `breaker.rs`: the per-role circuit breaker, synchronous code on an injected clock.
//! - `cache/`: a role's idempotent-call cache: canonical key, byte-capped TTL store, single flight.
//! - `command.rs`: command roles, a fresh process per call.
//! - `progress.rs`: the progress an agent reports for a call, relayed to its caller and as events.
//! - `mcp_notify.rs`: MCP servers' notifications: progress relayed by token, list changes broadcast by role.
//! - `preload.rs`: preload roles, a warm Python parent (the kit's preloader) forked per call.
//! - `swarm.rs`: the `Swarm` handle: start, call, roles, agents, stats, events, shutdown.
//! - `reload.rs`: hot reload: unchanged roles kept warm, changed ones rolled over, removed ones drained.
//! - `pool.rs`: the handle on a role's pool.
//! - `remote.rs`: `RemoteCalls`, the seam through which `remote = true` roles are called (`skep-cluster`).
//! - `limits/`: recycling by calls, lifetime (with jitter) and memory; each agent's RSS and CPU
//!   from /proc; whether cgroup v2 is delegated here.
//! - `lease.rs`: what a call holds while it runs: a lease on an agent, or a ticket for a command.
//! - `supervisor/`: the one task per role that owns its agents, breaker and stats.
//! - `launch.rs`: starting one agent (process, connection, handshake) and watching it exit.
//! - `error.rs`: `SwarmError` and its one mapping to JSON-RPC error objects.
//! - `events.rs`: the typed event stream.
//! - `role_stats.rs`: per-role counters and latency percentiles.
//! - `coordinate.rs`: fan-out, race and broadcast over a role's agents.
//! - `route.rs`: picking a role for free text by its `route` patterns.
//! - `demo_role.rs`: the built-in demo role and the demo agent's methods.
//! - `process/`: the one process runner: spawning every child (agents, command roles, workflow
//!   commands) in its own process group, watching it exit, the stop ladder, bounded output, the
//!   watcher that kills our groups if we die.
//! - `stderr_ring.rs`: the bounded ring an agent's stderr drains into.
//! - `bin/skep-test-agent.rs`: a misbehaving agent for tests, its behaviour chosen by flags.

mod advertised;
mod breaker;
mod cache;
mod command;
mod config;
mod coordinate;
mod demo_role;
mod diagnostic;
mod error;
mod events;
mod launch;
mod lease;
mod limits;
mod mcp_notify;
mod pool;
mod preload;
mod process;
mod progress;
mod reload;
mod remote;
mod role_stats;
mod route;
mod spill;
mod stderr_ring;
mod supervisor;
mod swarm;

pub use breaker::{
    Breaker, BreakerConfig, BreakerSnapshot, BreakerState, CallOutcome, CircuitOpen, Permit, Transition,
};
pub use cache::{CacheConfig, CacheKey, CacheStats, IdempotentCache, KeyError, MAX_DEPTH, ResultStore, canonical_json};
pub use config::{
    ClusterConfig, Config, ConfigError, Cost, DEFAULT_CLUSTER_NAME, DEFAULT_HEARTBEAT, DEFAULT_MAX_BODY,
    DEFAULT_RECYCLE_JITTER, DEFAULT_SEPARATOR, DaemonConfig, Handshake, MAX_DURATION, MAX_SIZE, McpConfig, Protocol,
    RoleConfig, Secret, Share, TlsConfig, ToolConfig, is_subject_token, is_valid_name, is_valid_tool_name,
    parse_duration, parse_size,
};
pub use coordinate::{BroadcastReply, RaceCall, RaceWin, Settled};
pub use demo_role::{DEMO_ROLE, demo_agent_module, demo_config};
pub use diagnostic::{FileError, Invalid, Location, from_toml, read_source};
pub use error::SwarmError;
pub use events::{Event, Outcome};
pub use limits::RecycleCause;
pub use mcp_notify::{MCP_PROGRESS_METHOD, McpListChanged, McpListKind, McpProgressWatch, mcp_list_changes};
pub use process::{
    ChildProcess, Completed, Rlimits, RunError, SpawnError, SpawnSpec, StopOutcome, Usage, describe_exit,
    run_to_completion,
};
pub use progress::{PROGRESS_METHOD, Progress, ProgressSink, with_progress};
pub use reload::ReloadReport;
pub use remote::{RemoteAgent, RemoteCalls, RemoteWorker, RoleLoad};
pub use role_stats::{AgentCounts, Latency, Recycled, RoleStats, SwarmStats};
pub use stderr_ring::{STDERR_RING_CAPACITY, StderrTail};
pub use supervisor::AgentInfo;
pub use swarm::{CallOptions, RoleInfo, Swarm};
