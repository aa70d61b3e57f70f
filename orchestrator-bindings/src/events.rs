//! `onEvent`: the swarm's event stream delivered to a JavaScript callback.

use napi::Status;
use napi::bindgen_prelude::{Env, Function};
use napi::threadsafe_function::ThreadsafeFunctionCallMode;
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

/// Where events come from: this process's swarm, or a daemon's.
pub enum Source {
    /// The in-process swarm's stream.
    Local(tokio::sync::broadcast::Receiver<skep_swarm::Event>),
    /// A daemon's stream over its control socket (subscribed on first use).
    Remote(std::sync::Arc<crate::remote::Remote>),
}

/// Forwards every event to `listener` until the returned function is called.
///
/// The callback is weak (it does not keep Node's event loop alive), and a
/// listener that falls more than the swarm's event buffer behind is told how
/// many events it missed with `{ type: "lagged", missed }`.
pub fn listen<'env>(
    env: &'env Env,
    source: Source,
    listener: Function<'env, Value, ()>,
) -> napi::Result<Function<'env, (), ()>> {
    let callback = listener.build_threadsafe_function::<Value>().weak::<true>().build()?;
    let stop = CancellationToken::new();
    let stopped = stop.clone();
    napi::bindgen_prelude::spawn(async move {
        let mut events = match source {
            Source::Local(events) => Events::Local(events),
            Source::Remote(remote) => match remote.events().await {
                Ok(events) => Events::Remote(events),
                Err(e) => {
                    // The package has no logger of its own: a listener that cannot start says so on stderr.
                    eprintln!("skep: onEvent: cannot subscribe to the daemon's events: {}", e.code());
                    return;
                }
            },
        };
        loop {
            let next = tokio::select! {
                // Once unsubscribed, no event that comes later is delivered.
                biased;
                () = stopped.cancelled() => break,
                next = events.recv() => next,
            };
            let value = match next {
                Ok(value) => value,
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

/// Either stream, as JSON values.
enum Events {
    Local(tokio::sync::broadcast::Receiver<skep_swarm::Event>),
    Remote(tokio::sync::broadcast::Receiver<Value>),
}

impl Events {
    async fn recv(&mut self) -> Result<Value, RecvError> {
        match self {
            Events::Local(events) => events.recv().await.map(|e| serde_json::to_value(&e).unwrap_or(Value::Null)),
            Events::Remote(events) => events.recv().await,
        }
    }
}
