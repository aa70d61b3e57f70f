//! The gateway's open sessions, as `skep stats`, `skep status` and the grid
//! show them: each session's transport, age, calls and the agents of its
//! own (`share = "session"`), and per role which processes serve it. The
//! gateway owns the list: a session enters it on `notifications/initialized`
//! and leaves it when its server (the last clone of it) goes.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Instant;

use serde_json::{Value, json};

use super::spares::Held;

/// How many characters of a session id the views show: enough to tell
/// sessions apart, short enough for a table.
const SHOWN_ID: usize = 8;

/// How a session reaches the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    /// A `skep mcp` relay on the session socket.
    Stdio,
    /// Streamable HTTP.
    Http,
}

impl Transport {
    fn as_str(self) -> &'static str {
        match self {
            Transport::Stdio => "stdio",
            Transport::Http => "http",
        }
    }
}

/// The agents a session holds of its own, by role (`share = "session"`).
pub(crate) type Own = Arc<tokio::sync::Mutex<HashMap<String, Arc<Held>>>>;

/// One session's figures, shared by its server's clones and the registry.
#[derive(Debug)]
pub(crate) struct Entry {
    transport: Transport,
    opened: Instant,
    /// The session id, once the session is initialized.
    id: OnceLock<String>,
    calls: AtomicU64,
    in_flight: AtomicU64,
    pub(crate) own: Own,
}

impl Entry {
    pub(crate) fn new(transport: Transport) -> Entry {
        Entry {
            transport,
            opened: Instant::now(),
            id: OnceLock::new(),
            calls: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            own: Own::default(),
        }
    }

    /// Counts a call that reaches a server; it is in flight until the guard goes.
    pub(crate) fn call(self: &Arc<Self>) -> InFlight {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(Arc::clone(self))
    }

    /// The session as the views show it; `agents` are its own, read live.
    async fn view(&self) -> Value {
        // Held while the session takes an agent, which may be a cold start:
        // the views show the agents it has then, rather than wait for it.
        let own: Vec<(String, Arc<Held>)> = match self.own.try_lock() {
            Ok(own) => own.iter().map(|(role, held)| (role.clone(), Arc::clone(held))).collect(),
            Err(_) => Vec::new(),
        };
        let mut agents = Vec::new();
        for (role, held) in own {
            for agent in held.swarm().agents().await {
                agents.push(json!({ "role": role, "pid": agent.pid }));
            }
        }
        agents.sort_by(|a, b| a["role"].as_str().cmp(&b["role"].as_str()));
        let id = self.id.get().map_or("", String::as_str);
        json!({
            "id": id.chars().take(SHOWN_ID).collect::<String>(),
            "transport": self.transport.as_str(),
            "ageMs": self.opened.elapsed().as_millis() as u64,
            "calls": self.calls.load(Ordering::Relaxed),
            "inFlight": self.in_flight.load(Ordering::Relaxed),
            "agents": agents,
        })
    }
}

/// A call of a session in flight.
#[derive(Debug)]
pub(crate) struct InFlight(Arc<Entry>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The open sessions.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    next: AtomicU64,
    open: Mutex<BTreeMap<u64, Arc<Entry>>>,
}

impl Registry {
    /// Lists `entry` under `id` (the HTTP session id; a relay's session gets
    /// one of the gateway's own) until the returned guard goes.
    pub(crate) fn enter(self: &Arc<Self>, entry: &Arc<Entry>, id: Option<&str>) -> Registered {
        let key = self.next.fetch_add(1, Ordering::Relaxed);
        let id = id.map_or_else(|| format!("stdio-{key}"), str::to_owned);
        // A second initialized on one session (a client's mistake) keeps the first id.
        let _ = entry.id.set(id);
        lock(&self.open).insert(key, Arc::clone(entry));
        Registered { registry: Arc::clone(self), key }
    }

    /// Every open session, oldest first.
    pub(crate) async fn sessions(&self) -> Vec<Value> {
        let open: Vec<Arc<Entry>> = lock(&self.open).values().cloned().collect();
        let mut sessions = Vec::with_capacity(open.len());
        for entry in open {
            sessions.push(entry.view().await);
        }
        sessions
    }
}

/// A session's place in the registry, left when dropped.
#[derive(Debug)]
pub(crate) struct Registered {
    registry: Arc<Registry>,
    key: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        lock(&self.registry.open).remove(&self.key);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
