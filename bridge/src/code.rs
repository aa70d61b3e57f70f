//! Error codes on the wire: JSON-RPC 2.0's own and skep's, as tabled in
//! docs/protocol.md. One list, so every crate answers with the same numbers.

/// Invalid JSON was received.
pub const PARSE_ERROR: i32 = -32700;
/// The JSON is not a valid request object (or a frame was over the size limit).
pub const INVALID_REQUEST: i32 = -32600;
/// The method does not exist.
pub const METHOD_NOT_FOUND: i32 = -32601;
/// The params do not fit the method.
pub const INVALID_PARAMS: i32 = -32602;
/// The handler failed (including a panic).
pub const INTERNAL_ERROR: i32 = -32603;
/// No reply within the deadline.
pub const TIMEOUT: i32 = -32001;
/// A circuit breaker is open; `data.retryAfterMs` says when to try again.
pub const CIRCUIT_OPEN: i32 = -32002;
/// The peer (an agent) exited or closed its output while the call was in flight.
pub const AGENT_CRASHED: i32 = -32003;
/// Too much in flight already; retry later.
pub const OVERLOADED: i32 = -32004;
/// The server is shutting down and will not run the call.
pub const SHUTTING_DOWN: i32 = -32005;
/// The request was cancelled by `$/cancelRequest` (LSP's `RequestCancelled`).
pub const REQUEST_CANCELLED: i32 = -32800;

/// The conventional name of a code, for logs and tables.
pub fn name(code: i32) -> &'static str {
    match code {
        PARSE_ERROR => "parse error",
        INVALID_REQUEST => "invalid request",
        METHOD_NOT_FOUND => "method not found",
        INVALID_PARAMS => "invalid params",
        INTERNAL_ERROR => "internal error",
        TIMEOUT => "timeout",
        CIRCUIT_OPEN => "circuit open",
        AGENT_CRASHED => "agent crashed",
        OVERLOADED => "overloaded",
        SHUTTING_DOWN => "shutting down",
        REQUEST_CANCELLED => "request cancelled",
        -32099..=-32000 => "server error",
        _ => "application error",
    }
}
