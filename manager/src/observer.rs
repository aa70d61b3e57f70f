//! The client side of the observe socket: connecting, finding this user's
//! orchestrators, and subscribing to events. Shared by `ls`, `stats` and `grid`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Value, json};
use skep_bridge::{Client, ClientConfig, RequestOptions};
use skep_service::observe_dir;
use tokio::net::UnixStream;
use tokio::sync::mpsc;

/// How long an orchestrator may take to answer `observe/info` before `skep ls` skips it.
const INFO_TIMEOUT: Duration = Duration::from_secs(3);

/// One running orchestrator, as `observe/info` describes it.
#[derive(Debug, Clone)]
pub struct Found {
    pub socket: PathBuf,
    pub info: Value,
}

/// Connects to an observe socket.
pub async fn connect(socket: &Path) -> anyhow::Result<Client> {
    let stream = UnixStream::connect(socket)
        .await
        .with_context(|| format!("cannot connect to the observe socket {}", socket.display()))?;
    let (reader, writer) = stream.into_split();
    Ok(Client::connect(reader, writer, ClientConfig::default()))
}

/// Connects and subscribes to events (filtered by `filter`, e.g. `{"agent": "r/1"}`);
/// each event arrives on the returned channel, which closes when the orchestrator goes away.
pub async fn subscribe(socket: &Path, filter: Value) -> anyhow::Result<(Client, mpsc::UnboundedReceiver<Value>)> {
    let stream = UnixStream::connect(socket)
        .await
        .with_context(|| format!("cannot connect to the observe socket {}", socket.display()))?;
    let (reader, writer) = stream.into_split();
    let (tx, rx) = mpsc::unbounded_channel();
    let client = Client::builder(ClientConfig::default())
        .on_notification(move |n| {
            if let Some(event) = n.subscription_result() {
                let _ = tx.send(event);
            }
        })
        .connect(reader, writer);
    let _: Value = client.call("events/subscribe", filter).await.context("cannot subscribe to events")?;
    Ok((client, rx))
}

/// Calls a read-only method and decodes its result.
pub async fn fetch(client: &Client, method: &str) -> anyhow::Result<Value> {
    let options = RequestOptions { timeout: Some(INFO_TIMEOUT) };
    let result = client.call_raw(method, None, options).await.with_context(|| format!("{method} failed"))?;
    serde_json::from_str(result.get()).with_context(|| format!("{method} answered something that is not JSON"))
}

/// Every orchestrator of this user with a socket in the observe directory;
/// sockets nobody listens on any more are removed.
pub async fn discover() -> anyhow::Result<Vec<Found>> {
    let dir = observe_dir();
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot list {}", dir.display())),
    };
    let mut found = Vec::new();
    let mut sockets: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "sock"))
        .collect();
    sockets.sort();
    for socket in sockets {
        match UnixStream::connect(&socket).await {
            Ok(stream) => {
                let (reader, writer) = stream.into_split();
                let client = Client::connect(reader, writer, ClientConfig::default());
                match fetch(&client, "observe/info").await {
                    Ok(info) => found.push(Found { socket, info }),
                    Err(e) => tracing::warn!(socket = %socket.display(), "skipping an orchestrator: {e:#}"),
                }
            }
            Err(e) if matches!(e.kind(), std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::NotFound) => {
                tracing::info!(socket = %socket.display(), "removing a stale observe socket");
                let _ = std::fs::remove_file(&socket);
            }
            Err(e) => tracing::warn!(socket = %socket.display(), %e, "cannot connect; skipping"),
        }
    }
    Ok(found)
}

/// The socket to attach to: the one given, or the only running orchestrator.
pub async fn resolve(attach: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(socket) = attach {
        return Ok(socket);
    }
    let found = discover().await?;
    match found.as_slice() {
        [one] => Ok(one.socket.clone()),
        [] => bail!(
            "no running orchestrator found in {}; start one with `skep serve --observe` or `skep grid --config FILE`",
            observe_dir().display()
        ),
        many => {
            let list: Vec<String> = many.iter().map(|f| format!("  {}", f.socket.display())).collect();
            bail!("{} orchestrators are running; pick one with --attach SOCKET:\n{}", many.len(), list.join("\n"))
        }
    }
}

/// `{"agents": ...}` counts as `busy+idle of total`.
pub fn agent_total(info: &Value) -> u64 {
    ["starting", "idle", "busy", "stopping"].iter().map(|k| info["agents"][k].as_u64().unwrap_or(0)).sum()
}

/// A filter for one agent's events.
pub fn agent_filter(agent: &str) -> Value {
    json!({ "agent": agent })
}
