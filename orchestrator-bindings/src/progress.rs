//! `onProgress`: a workflow's progress events (`runWorkflow`), or an agent's
//! progress for a call (`call`, `race`, `broadcast`), delivered to a
//! JavaScript callback from the task doing the work.

use napi::bindgen_prelude::Function;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use serde_json::Value;
use skep_workflow::Progress;

use crate::error::Failure;

/// The callback, callable from any thread; weak, so it never keeps Node alive.
pub type Listener = ThreadsafeFunction<Value, (), Value, napi::Status, false, true>;

/// Makes `callback` callable from the run's task.
pub fn listener(callback: Function<'_, Value, ()>) -> Result<Listener, Failure> {
    callback
        .build_threadsafe_function::<Value>()
        .weak::<true>()
        .build()
        .map_err(|e| Failure::InvalidArg(format!("options.onProgress: {}", e.reason)))
}

/// Queues one progress event, already JSON (from a daemon), for the callback, if there is one.
pub fn send_value(listener: Option<&Listener>, progress: Value) {
    if let Some(listener) = listener {
        listener.call(progress, ThreadsafeFunctionCallMode::NonBlocking);
    }
}

/// Runs `calls` with their agents' progress queued for the callback, if there is one.
pub async fn relayed<F: Future>(listener: Option<Listener>, calls: F) -> F::Output {
    let Some(listener) = listener else { return calls.await };
    let sink = move |progress: skep_swarm::Progress| {
        if let Ok(value) = serde_json::to_value(&progress) {
            listener.call(value, ThreadsafeFunctionCallMode::NonBlocking);
        }
    };
    skep_swarm::with_progress(sink, calls).await
}

/// Queues one progress event for the callback, if there is one.
pub fn send(listener: Option<&Listener>, progress: &Progress) {
    if let (Some(listener), Ok(value)) = (listener, serde_json::to_value(progress)) {
        listener.call(value, ThreadsafeFunctionCallMode::NonBlocking);
    }
}
