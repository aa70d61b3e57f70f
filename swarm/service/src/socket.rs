//! Serving a method table on a private Unix socket, shared by the observe
//! socket and the daemon's control socket: binding (replacing a stale socket,
//! never a live one), the peer-uid check on every connection, and the accept
//! loop, which counts the connections it serves.

use std::path::Path;
use std::sync::Arc;

use skep_bridge::Server;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::observe::ObserveError;
use crate::observe_dir::uid;

/// How many connections a socket is serving now; watchers see every change.
#[derive(Debug, Clone)]
pub(crate) struct Presence(Arc<watch::Sender<usize>>);

impl Default for Presence {
    fn default() -> Self {
        Presence(Arc::new(watch::Sender::new(0)))
    }
}

impl Presence {
    /// Counts one connection until the guard is dropped.
    pub(crate) fn enter(&self) -> Entered {
        self.0.send_modify(|n| *n += 1);
        Entered(self.clone())
    }

    /// The number of connections now.
    pub(crate) fn now(&self) -> usize {
        *self.0.borrow()
    }

    /// A receiver that sees the count change.
    pub(crate) fn watch(&self) -> watch::Receiver<usize> {
        self.0.subscribe()
    }
}

pub(crate) struct Entered(Presence);

impl Drop for Entered {
    fn drop(&mut self) {
        self.0.0.send_modify(|n| *n -= 1);
    }
}

/// Binds `path`, replacing a stale socket (nobody listening) but never a live one.
pub(crate) async fn bind(path: &Path) -> Result<UnixListener, ObserveError> {
    let bind_error = |source| ObserveError::Bind { path: path.to_path_buf(), source };
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        use std::os::unix::fs::FileTypeExt;
        if !meta.file_type().is_socket() {
            let reason =
                std::io::Error::other("a file that is not a socket is in the way; remove it or pick another path");
            return Err(bind_error(reason));
        }
        if UnixStream::connect(path).await.is_ok() {
            return Err(ObserveError::InUse { path: path.to_path_buf() });
        }
        tracing::info!(socket = %path.display(), "removing a stale socket");
        std::fs::remove_file(path).map_err(bind_error)?;
    }
    let listener = UnixListener::bind(path).map_err(bind_error)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(bind_error)?;
    Ok(listener)
}

/// Only the orchestrator's own user may observe it.
pub(crate) fn admit(peer_uid: std::io::Result<u32>, me: u32) -> Result<(), String> {
    match peer_uid {
        Ok(uid) if uid == me => Ok(()),
        Ok(uid) => Err(format!("peer uid {uid} is not this orchestrator's uid {me}")),
        Err(e) => Err(format!("its uid cannot be checked ({e})")),
    }
}

/// Serves a method table: one bridge server connection per accepted stream.
pub(crate) async fn accept_loop(
    listener: UnixListener,
    server: Arc<Server>,
    stop: CancellationToken,
    presence: Presence,
) {
    accept_each(listener, stop, presence, "connection", move |stream, stop| {
        let server = Arc::clone(&server);
        async move {
            let (reader, writer) = stream.into_split();
            if let Err(e) = server.serve(reader, writer, stop).await {
                tracing::debug!(%e, "connection ended with an error");
            }
        }
    })
    .await;
}

/// Accepts connections from our own uid until `stop`, runs `serve` on each
/// (counted in `presence`, handed a child of `stop`), then waits for them all
/// to end.
pub(crate) async fn accept_each<F, Fut>(
    listener: UnixListener,
    stop: CancellationToken,
    presence: Presence,
    what: &'static str,
    serve: F,
) where
    F: Fn(UnixStream, CancellationToken) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let me = uid();
    let mut connections = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    if let Err(refusal) = admit(stream.peer_cred().map(|cred| cred.uid()), me) {
                        tracing::warn!("refused a {what}: {refusal}");
                        continue;
                    }
                    let entered = presence.enter();
                    let served = serve(stream, stop.child_token());
                    connections.spawn(async move {
                        let _entered = entered;
                        served.await;
                    });
                }
                // EMFILE and the like: keep serving the connections we have.
                Err(e) => {
                    tracing::warn!(%e, "cannot accept a {what}");
                    // Out of descriptors persists for a while: do not spin on it.
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            () = stop.cancelled() => break,
        }
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_our_own_uid_is_admitted() {
        assert_eq!(admit(Ok(1000), 1000), Ok(()));
        assert!(admit(Ok(0), 1000).unwrap_err().contains("peer uid 0"));
        assert!(admit(Err(std::io::Error::other("no creds")), 1000).unwrap_err().contains("cannot be checked"));
    }

    #[test]
    fn presence_counts_connections_until_they_end() {
        let presence = Presence::default();
        let watch = presence.watch();
        let (a, b) = (presence.enter(), presence.enter());
        assert_eq!((presence.now(), *watch.borrow()), (2, 2));
        drop(a);
        drop(b);
        assert_eq!(presence.now(), 0);
    }
}
