//! `onEvent`: the swarm's event stream delivered to a JavaScript callback.

use napi::Status;
use napi::bindgen_prelude::{Env, Function};
use napi::threadsafe_function::ThreadsafeFunctionCallMode;
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

/// Forwards every event to `listener` until the returned function is called.
///
/// The callback is weak (it does not keep Node's event loop alive), and a
/// listener that falls more than the swarm's event buffer behind is told how
/// many events it missed with `{ type: "lagged", missed }`.
pub fn listen<'env>(
    env: &'env Env,
    swarm: &skep_swarm::Swarm,
    listener: Function<'env, Value, ()>,
) -> napi::Result<Function<'env, (), ()>> {
    let callback = listener.build_threadsafe_function::<Value>().weak::<true>().build()?;
    let stop = CancellationToken::new();
    let mut events = swarm.subscribe();
    let stopped = stop.clone();
    napi::bindgen_prelude::spawn(async move {
        loop {
            let next = tokio::select! {
                // Once unsubscribed, no event that comes later is delivered.
                biased;
                () = stopped.cancelled() => break,
                next = events.recv() => next,
            };
            let value = match next {
                Ok(event) => serde_json::to_value(&event).unwrap_or(Value::Null),
                Err(RecvError::Lagged(missed)) => json!({ "type": "lagged", "missed": missed }),
                Err(RecvError::Closed) => break,
            };
            if callback.call(value, ThreadsafeFunctionCallMode::NonBlocking) == Status::Closing {
                break;
            }
        }
    });
    env.create_function_from_closure("unsubscribe", move |_| {
        stop.cancel();
        Ok(())
    })
}
