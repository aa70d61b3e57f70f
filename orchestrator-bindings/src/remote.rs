//! `Swarm.connect`: the same `Swarm` API over a daemon's control socket
//! (docs/daemon.md) instead of a swarm in this process. Every method is one
//! JSON-RPC call of the sidecar's table; an aborted call is dropped, which
//! sends `$/cancelRequest` to the daemon, which cancels it on the agent.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use serde_json::{Value, json};
use skep_bridge::{CallError, Client, ClientConfig, RequestOptions};
use skep_service::daemon::DaemonPaths;
use skep_service::daemon::attach;
use skep_swarm::{CallOptions, PROGRESS_METHOD};
use tokio::net::UnixStream;
use tokio::sync::broadcast;

use crate::error::{Failure, chain};
use crate::progress::{self, Listener};

/// Events buffered for a slow `onEvent` listener before it misses some.
const EVENT_BUFFER: usize = 4096;

/// A connection to a daemon, shared by the `Swarm` handle's methods.
#[derive(Debug)]
pub struct Remote {
    client: Mutex<Option<Arc<Client>>>,
    socket: PathBuf,
    /// The roles when we connected (`roles()` is synchronous).
    roles: Value,
    events: broadcast::Sender<Value>,
    subscribed: AtomicBool,
}

/// Where to find the daemon, and whether to start it.
#[derive(Debug, Default)]
pub struct Target {
    /// The config whose daemon to use (canonical path), or the demo's.
    pub config: Option<PathBuf>,
    /// A control socket to connect to directly (nothing is started).
    pub socket: Option<PathBuf>,
    /// Start the daemon if none runs, with this skep executable.
    pub start_with: Option<PathBuf>,
}

impl Remote {
    /// Connects (starting the daemon if asked and needed) and reads its roles.
    pub async fn connect(target: Target) -> Result<Remote, Failure> {
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let connector = event_connector(events.clone());
        let socket = target.socket.clone().unwrap_or_else(|| DaemonPaths::for_config(target.config.as_deref()).socket);
        let client = match (&target.socket, &target.start_with) {
            (None, Some(exe)) => {
                attach::attach(target.config.as_deref(), exe, &connector)
                    .await
                    .map_err(|e| Failure::Daemon(chain(&e)))?
                    .0
            }
            _ => connector(UnixStream::connect(&socket).await.map_err(|e| {
                Failure::Daemon(format!(
                    "no daemon answers on {} ({e}); start one with `skep up`, or pass autoStart",
                    socket.display()
                ))
            })?),
        };
        let remote = Remote {
            client: Mutex::new(Some(Arc::new(client))),
            socket,
            roles: Value::Null,
            events,
            subscribed: AtomicBool::new(false),
        };
        let roles = remote.request("swarm/roles", json!([]), None).await?;
        Ok(Remote { roles, ..remote })
    }

    /// The daemon's control socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The roles as of the connection.
    pub fn roles(&self) -> Value {
        self.roles.clone()
    }

    fn client(&self) -> Result<Arc<Client>, Failure> {
        let client = self.client.lock().unwrap_or_else(PoisonError::into_inner).clone();
        client.ok_or_else(|| Failure::Daemon("this swarm was closed".to_owned()))
    }

    /// One method of the daemon's table; `timeout` bounds our wait only when the daemon does not.
    pub async fn request(&self, method: &str, params: Value, call: Option<CallOptions>) -> Result<Value, Failure> {
        self.request_with_progress(method, params, call, None).await
    }

    /// [`Remote::request`], with the agent's `$/progress` for this call
    /// (which the daemon relays naming our request) handed to `progress`.
    pub async fn request_with_progress(
        &self,
        method: &str,
        params: Value,
        call: Option<CallOptions>,
        progress: Option<Listener>,
    ) -> Result<Value, Failure> {
        let client = self.client()?;
        let params = serde_json::value::to_raw_value(&params).map_err(|e| Failure::InvalidArg(e.to_string()))?;
        // The daemon enforces the call's deadline and answers -32001; ours only keeps a lost answer from hanging.
        let backstop = call.and_then(|c| c.timeout).map(|t| t * 2 + std::time::Duration::from_secs(5));
        let options = RequestOptions { timeout: backstop };
        let answer = match progress {
            None => client.call_raw(method, Some(&params), options).await,
            Some(listener) => {
                let relay = move |n: skep_bridge::Notification| {
                    if n.method != PROGRESS_METHOD {
                        return;
                    }
                    if let Some(Value::Object(mut fields)) = n.params.and_then(|p| serde_json::from_str(p.get()).ok()) {
                        // The same shape as in-process progress: the request id is the wire's business.
                        fields.remove("id");
                        progress::send_value(Some(&listener), Value::Object(fields));
                    }
                };
                client.call_raw_notified(method, Some(&params), options, relay).await
            }
        };
        match answer {
            Ok(raw) => serde_json::from_str(raw.get()).map_err(|e| Failure::InvalidArg(format!("not JSON: {e}"))),
            Err(CallError::Rpc(e)) => Err(Failure::Remote(e)),
            Err(CallError::Disconnected) => Err(Failure::Daemon(format!(
                "the daemon on {} closed the connection (stopped or killed); connect again",
                self.socket.display()
            ))),
            Err(other) => Err(Failure::Daemon(format!("{method}: {other}"))),
        }
    }

    /// The daemon's events; the first listener subscribes this connection.
    pub async fn events(&self) -> Result<broadcast::Receiver<Value>, Failure> {
        let receiver = self.events.subscribe();
        if !self.subscribed.swap(true, Ordering::SeqCst) {
            self.request("events/subscribe", json!([]), None).await?;
        }
        Ok(receiver)
    }

    /// Runs a workflow on the daemon over a connection of its own, so its
    /// progress is the only traffic on it; resolves with the run's record.
    pub async fn run_workflow(
        &self,
        file: &Path,
        jobs: usize,
        no_cache: bool,
        on_progress: impl Fn(Value) + Send + Sync + 'static,
    ) -> Result<Value, Failure> {
        let (tx, mut updates) = tokio::sync::mpsc::unbounded_channel::<Value>();
        let stream = UnixStream::connect(&self.socket).await.map_err(|e| Failure::Daemon(e.to_string()))?;
        let (reader, writer) = stream.into_split();
        let client = Client::builder(ClientConfig::default())
            .on_notification(move |n| {
                if let Some(update) = n.subscription_result() {
                    let _ = tx.send(update);
                }
            })
            .connect(reader, writer);
        let file = std::path::absolute(file).map_err(|e| Failure::InvalidArg(format!("file: {e}")))?;
        let params = json!({ "file": file, "jobs": jobs, "noCache": no_cache });
        client.call::<_, Value>("workflow/run", params).await.map_err(|e| match e {
            CallError::Rpc(e) => Failure::Remote(e),
            other => Failure::Daemon(other.to_string()),
        })?;
        loop {
            tokio::select! {
                update = updates.recv() => match update {
                    Some(mut update) => match update["event"].as_str() {
                        Some("result") => return Ok(update["record"].take()),
                        Some("error") => {
                            let message = update["message"].as_str().unwrap_or("the run failed").to_owned();
                            return Err(Failure::Daemon(message));
                        }
                        _ => on_progress(update),
                    },
                    None => break,
                },
                () = client.disconnected() => break,
            }
        }
        Err(Failure::Daemon("the daemon closed the connection mid-run".to_owned()))
    }

    /// Ends the connection; the daemon and its agents go on for other clients.
    pub fn close(&self) {
        self.client.lock().unwrap_or_else(PoisonError::into_inner).take();
    }
}

/// Clients whose `events/event` notifications go to `events`.
fn event_connector(events: broadcast::Sender<Value>) -> impl Fn(UnixStream) -> Client + Send + Sync {
    move |stream: UnixStream| {
        let events = events.clone();
        let (reader, writer) = stream.into_split();
        Client::builder(ClientConfig::default())
            .on_notification(move |n| {
                if let Some(event) = n.subscription_result().filter(|_| n.method == "events/event") {
                    let _ = events.send(event);
                }
            })
            .connect(reader, writer)
    }
}

/// `swarm/call`'s (and the others') `timeoutMs` and `cache`, from the call options.
pub fn call_fields(params: &mut Value, call: CallOptions) {
    if let Some(timeout) = call.timeout {
        params["timeoutMs"] = json!(timeout.as_millis().max(1) as u64);
    }
    if call.bypass_cache {
        params["cache"] = json!("bypass");
    }
}
