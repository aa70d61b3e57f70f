//! MCP progress from pooled MCP servers (`notifications/progress`), relayed
//! to whoever asked for it. An MCP server names the progress of a request by
//! the `_meta.progressToken` the request carried, not by its id; a caller
//! that wants it (the MCP gateway) takes a token here, unique in this
//! process, puts it in the request, and gets each notification naming it
//! until the watch is dropped.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::Value;
use skep_bridge::Notification;

/// The notification an MCP server sends to report a request's progress.
pub const MCP_PROGRESS_METHOD: &str = "notifications/progress";

type Sink = Arc<dyn Fn(Value) + Send + Sync>;

fn watches() -> &'static Mutex<HashMap<String, Sink>> {
    static WATCHES: OnceLock<Mutex<HashMap<String, Sink>>> = OnceLock::new();
    WATCHES.get_or_init(Mutex::default)
}

/// A progress token being watched; dropping it stops the relay.
#[derive(Debug)]
pub struct McpProgressWatch {
    token: String,
}

impl McpProgressWatch {
    /// Watches a fresh token: every `notifications/progress` naming it, from
    /// any MCP server of this process, goes to `sink` (its params, on a
    /// connection's reader task: `sink` must not block).
    pub fn new(sink: impl Fn(Value) + Send + Sync + 'static) -> McpProgressWatch {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let token = format!("skep-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        lock().insert(token.clone(), Arc::new(sink));
        McpProgressWatch { token }
    }

    /// The token to put in the request's `_meta.progressToken`.
    pub fn token(&self) -> &str {
        &self.token
    }
}

impl Drop for McpProgressWatch {
    fn drop(&mut self) {
        lock().remove(&self.token);
    }
}

fn lock() -> std::sync::MutexGuard<'static, HashMap<String, Sink>> {
    watches().lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Hands an MCP server's notification to the watch its progress token names, if any.
pub(crate) fn deliver(notification: Notification) {
    if notification.method != MCP_PROGRESS_METHOD {
        return;
    }
    let Some(params) = notification.params.as_deref().and_then(|p| serde_json::from_str::<Value>(p.get()).ok()) else {
        return;
    };
    let Some(token) = params.get("progressToken").and_then(Value::as_str) else { return };
    // Cloned out so that the sink runs without the lock.
    let sink = lock().get(token).cloned();
    if let Some(sink) = sink {
        sink(params);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::value::RawValue;

    use super::*;

    fn progress(token: &str, n: u64) -> Notification {
        let params = serde_json::json!({"progressToken": token, "progress": n}).to_string();
        Notification { method: MCP_PROGRESS_METHOD.to_owned(), params: Some(RawValue::from_string(params).unwrap()) }
    }

    #[test]
    fn progress_reaches_the_watch_its_token_names_until_it_is_dropped() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let into = Arc::clone(&seen);
        let watch = McpProgressWatch::new(move |p| into.lock().unwrap().push(p["progress"].as_u64().unwrap()));
        let other = McpProgressWatch::new(|_| panic!("not this one"));
        assert_ne!(watch.token(), other.token());
        deliver(progress(watch.token(), 1));
        deliver(progress("someone-else", 2));
        let token = watch.token().to_owned();
        drop(watch);
        deliver(progress(&token, 3));
        assert_eq!(*seen.lock().unwrap(), vec![1]);
    }
}
