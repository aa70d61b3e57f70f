//! The runtime the addon's futures run on: one worker thread.
//!
//! skep's own work is I/O between pipes; the CPU goes to the agents and to
//! Node's thread. With one worker, a call's tasks (the caller's future, the
//! bridge's writer and reader) wake each other on the same thread instead of
//! across threads, so a call pays two thread hops (Node → worker → Node)
//! instead of several. The CLI makes the same choice (a current-thread
//! runtime); docs/benchmarks.md has the measurement.

use std::future::Future;
use std::sync::OnceLock;

use napi::bindgen_prelude::{Env, create_custom_tokio_runtime};
use tokio::runtime::Handle;

use crate::{completions, handoff};

/// The one-worker runtime's handle; napi owns the runtime itself (and shuts it down with the module).
static HANDLE: OnceLock<Handle> = OnceLock::new();

#[napi_derive::module_init]
fn init() {
    match tokio::runtime::Builder::new_multi_thread().worker_threads(1).thread_name("skep").enable_all().build() {
        Ok(runtime) => {
            let _ = HANDLE.set(runtime.handle().clone());
            create_custom_tokio_runtime(runtime);
        }
        // napi then builds its default runtime, which also works, only with more thread hops per call.
        Err(e) => eprintln!("skep: cannot build a one-worker runtime ({e}); using napi's default"),
    }
}

/// Runs `work` on the addon's runtime.
pub fn spawn(work: impl Future<Output = ()> + Send + 'static) {
    match HANDLE.get() {
        Some(handle) => drop(handle.spawn(work)),
        None => drop(napi::bindgen_prelude::spawn(work)),
    }
}

/// Runs `work` from a method of `env`: its first poll on this thread, the rest on the runtime (`handoff.rs`).
pub fn start_here(env: &Env, work: impl Future<Output = ()> + Send + 'static) {
    match HANDLE.get() {
        Some(handle) => completions::inline(env, || handoff::run(handle, work)),
        None => spawn(work),
    }
}
