//! Notifications from pooled MCP servers, relayed to whoever wants them.
//!
//! - Progress (`notifications/progress`): an MCP server names the progress of
//!   a request by the `_meta.progressToken` the request carried, not by its
//!   id; a caller that wants it (the MCP gateway) takes a token here, unique
//!   in this process, puts it in the request, and gets each notification
//!   naming it until the watch is dropped.
//! - List changes (`notifications/tools/list_changed` and its resources and
//!   prompts siblings): not tied to any request, so they are broadcast with
//!   the role whose server sent them ([`mcp_list_changes`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::Value;
use skep_bridge::Notification;
use tokio::sync::broadcast;

/// The notification an MCP server sends to report a request's progress.
pub const MCP_PROGRESS_METHOD: &str = "notifications/progress";

/// List changes buffered per subscriber; they are rare, and one missed is
/// seen as `Lagged`, which a subscriber treats as "everything changed".
const LIST_CHANGES_BUFFER: usize = 256;

/// Which of an MCP server's lists it says has changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum McpListKind {
    /// `notifications/tools/list_changed`.
    Tools,
    /// `notifications/resources/list_changed`.
    Resources,
    /// `notifications/prompts/list_changed`.
    Prompts,
}

impl McpListKind {
    fn from_method(method: &str) -> Option<McpListKind> {
        match method {
            "notifications/tools/list_changed" => Some(McpListKind::Tools),
            "notifications/resources/list_changed" => Some(McpListKind::Resources),
            "notifications/prompts/list_changed" => Some(McpListKind::Prompts),
            _ => None,
        }
    }
}

/// An MCP server of `role` said one of its lists changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct McpListChanged {
    /// The role whose server sent it.
    pub role: String,
    /// Which list.
    pub kind: McpListKind,
}

fn list_changes() -> &'static broadcast::Sender<McpListChanged> {
    static CHANGES: OnceLock<broadcast::Sender<McpListChanged>> = OnceLock::new();
    CHANGES.get_or_init(|| broadcast::channel(LIST_CHANGES_BUFFER).0)
}

/// Every list change any MCP server of this process announces from now on.
/// Roles are named, not swarms: a process with two swarms sharing a role
/// name sees both as that role.
pub fn mcp_list_changes() -> broadcast::Receiver<McpListChanged> {
    list_changes().subscribe()
}

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

/// Routes a notification from an MCP server of `role`: progress to the
/// watch its token names, if any; a list change to every subscriber.
pub(crate) fn deliver(role: &str, notification: Notification) {
    if let Some(kind) = McpListKind::from_method(&notification.method) {
        tracing::debug!(role, method = %notification.method, "an MCP server's list changed");
        // No subscriber (no gateway in this process) is not an error.
        let _ = list_changes().send(McpListChanged { role: role.to_owned(), kind });
        return;
    }
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
        deliver("r", progress(watch.token(), 1));
        deliver("r", progress("someone-else", 2));
        let token = watch.token().to_owned();
        drop(watch);
        deliver("r", progress(&token, 3));
        assert_eq!(*seen.lock().unwrap(), vec![1]);
    }

    #[test]
    fn a_list_change_is_broadcast_with_the_role_that_sent_it() {
        let mut changes = mcp_list_changes();
        let changed = |method: &str| Notification { method: method.to_owned(), params: None };
        deliver("fs", changed("notifications/tools/list_changed"));
        deliver("fs", changed("notifications/message"));
        deliver("mem", changed("notifications/prompts/list_changed"));
        assert_eq!(changes.try_recv().unwrap(), McpListChanged { role: "fs".into(), kind: McpListKind::Tools });
        assert_eq!(changes.try_recv().unwrap(), McpListChanged { role: "mem".into(), kind: McpListKind::Prompts });
        assert!(changes.try_recv().is_err());
    }
}
