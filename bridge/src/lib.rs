//! JSON-RPC 2.0 over byte streams, for peers that may misbehave.
//!
//! The bridge carries every hop in skep: the manager to the orchestrator, and
//! the orchestrator to each agent. Methods are registered on a jsonrpsee
//! `RpcModule`; the bridge owns the connection around it.
//!
//! # Layout
//! - `framing.rs`: newline-delimited and `Content-Length` frames, detection, the size limit.
//! - `message.rs`: classifying incoming messages and writing outgoing ones.
//! - `code.rs`: the error codes skep answers with.
//! - `server.rs`: serving a `Methods` table on a reader and writer.
//! - `caller.rs`: the peer a request came from, for handlers that notify it mid-call.
//! - `stand_in.rs`: request ids jsonrpsee cannot carry (negative, fractional, past 64 bits).
//! - `client/`: calling a peer, with timeouts, cancellation and counters; its
//!   outbox lets a caller write its own frame when the stream is idle.
//! - `buffers.rs`: pooled encode buffers.
//! - `writer.rs`: a server connection's one writer task.
//! - `stdio.rs`: taking over stdin and stdout for a sidecar.

pub mod code;

mod buffers;
mod caller;
mod client;
mod framing;
mod message;
mod server;
mod stand_in;
mod stdio;
mod writer;

pub use buffers::{BufferPool, PooledBuf};
pub use caller::Caller;
pub use client::{
    CallError, CancelStyle, Client, ClientBuilder, ClientConfig, ClientStats, MCP_CANCEL_METHOD, Notification,
    RequestOptions,
};
pub use framing::{DEFAULT_MAX_FRAME, Frame, FrameReader, Framing, encode_frame, frame_in_place};
pub use message::{
    Incoming, ParseError, Payload, classify, decode_error, error_response, parse, write_error, write_request,
};
pub use server::{CANCEL_METHOD, ServeSummary, Server, ServerConfig};
pub use stdio::{ProtocolReader, ProtocolWriter, protocol_stdio};

/// Re-exported so users register methods without naming jsonrpsee themselves.
pub use jsonrpsee::core::SubscriptionResult;
pub use jsonrpsee::{Methods, RpcModule, types::ErrorObjectOwned};
