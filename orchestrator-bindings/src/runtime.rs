//! The runtime the addon's futures run on: one worker thread.
//!
//! skep's own work is I/O between pipes; the CPU goes to the agents and to
//! Node's thread. With one worker, a call's tasks (the caller's future, the
//! bridge's writer and reader) wake each other on the same thread instead of
//! across threads, so a call pays two thread hops (Node → worker → Node)
//! instead of several. The CLI makes the same choice (a current-thread
//! runtime); docs/benchmarks.md has the measurement.
//!
//! napi owns the runtime: it shuts it down when the last JavaScript
//! environment using the addon ends (a worker thread's, say) and builds a
//! new one for the next, so the runtime is always asked of napi, never kept.

use std::future::Future;

use napi::bindgen_prelude::{Env, create_custom_tokio_runtime, within_runtime_if_available};
use tokio::runtime::Handle;

use crate::{completions, handoff};

#[napi_derive::module_init]
fn init() {
    match tokio::runtime::Builder::new_multi_thread().worker_threads(1).thread_name("skep").enable_all().build() {
        Ok(runtime) => create_custom_tokio_runtime(runtime),
        // napi then builds its default runtime, which also works, only with more thread hops per call.
        Err(e) => eprintln!("skep: cannot build a one-worker runtime ({e}); using napi's default"),
    }
}

/// Runs `work` on the addon's runtime.
pub fn spawn(work: impl Future<Output = ()> + Send + 'static) {
    drop(napi::bindgen_prelude::spawn(work));
}

/// Runs `work` from a method of `env`: its first poll on this thread, the rest on the runtime (`handoff.rs`).
pub fn start_here(env: &Env, work: impl Future<Output = ()> + Send + 'static) {
    let runtime = within_runtime_if_available(Handle::current);
    completions::inline(env, || handoff::run(&runtime, work));
}
