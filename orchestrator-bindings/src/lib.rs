//! The napi-rs binding behind the npm package `skep`: a swarm of warm agent
//! processes, in-process for Node. Thin by design: each exported method calls
//! one function of `skep-swarm`; options are checked once at the boundary and
//! errors are mapped in one place.
//!
//! # Layout
//! - `swarm.rs`: the exported class `Swarm`, one method per swarm function.
//! - `handoff.rs`: a call's first poll on Node's thread, the rest on the runtime.
//! - `json.rs`: a call's params and answer as JSON text, converted by V8's `JSON`.
//! - `options.rs`: the option objects JavaScript passes, checked into swarm types.
//! - `promise.rs`: turning a swarm future into a Promise, with `AbortSignal` support.
//! - `completions.rs`: settling those Promises from the runtime, one wake-up of Node per batch.
//! - `error.rs`: the one mapping from swarm errors to JavaScript `Error`s with `code`.
//! - `events.rs`: `onEvent`, the event stream as callbacks.
//! - `progress.rs`: `runWorkflow`'s `onProgress` callback.
//! - `remote.rs`: `Swarm.connect`, the same methods over a daemon's control socket.
//! - `demo.rs`: the built-in demo role, run by Node's own executable.
//! - `runtime.rs`: the one-worker tokio runtime the futures run on.

mod completions;
mod demo;
mod error;
mod events;
mod handoff;
mod json;
mod options;
mod progress;
mod promise;
mod remote;
mod runtime;
mod swarm;

pub use swarm::Swarm;
