//! skep's served method tables: what a JSON-RPC peer can ask of a swarm.
//!
//! The core (`skep-swarm`) knows nothing of JSON-RPC method names; this crate
//! maps them onto it, once, for every way in: the private sidecar (`skep
//! serve`, the Node package's sidecar mode) and the read-only observe socket
//! (`skep ls`, `stats`, `grid`). The daemon's control socket (`daemon/`) serves both.
//!
//! # Layout
//! - `rpc.rs`: the sidecar's method table, and the read-only views it shares with the observe socket.
//! - `observe.rs`: the observe socket: read-only methods and events for `skep ls`, `stats` and `grid`.
//! - `observe_dir.rs`: the private per-user directory observe sockets live in.
//! - `socket.rs`: serving a method table on a private Unix socket (bind, peer-uid check, accept loop).
//! - `mcp/`: the MCP gateway: the roles' tools as one MCP server, over a Unix socket and Streamable HTTP.
//! - `daemon/`: the shared daemon: its control socket, lock, idle exit, reload, log and detached start.

pub mod daemon;
pub mod mcp;
mod observe;
mod observe_dir;
mod rpc;
mod socket;

pub use observe::{Observation, ObserveError, ObserveOptions, observe};
pub use observe_dir::{ensure_private_dir, observe_dir, uid};
pub use rpc::{Sidecar, rpc_module};
