//! Idle exit: a daemon nobody is connected to for `idle_exit` stops, so
//! nothing lingers forever. Every call arrives on a connection, so "no client
//! connected" is also "no call".

use std::time::Duration;

use tokio::sync::watch;

/// Resolves once the connection count has stayed at zero for `after`; a
/// client that connects in the meantime starts the wait over.
pub(crate) async fn idle_for(mut connections: watch::Receiver<usize>, after: Duration) {
    loop {
        // Wait for no connection at all.
        if connections.wait_for(|n| *n == 0).await.is_err() {
            return std::future::pending().await;
        }
        tokio::select! {
            () = tokio::time::sleep(after) => return,
            changed = connections.changed() => if changed.is_err() {
                return std::future::pending().await;
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HALF_HOUR: Duration = Duration::from_secs(30 * 60);

    /// Runs `idle_for` on the paused clock until it ends or `limit` of virtual time passes.
    async fn ends_within(rx: watch::Receiver<usize>, limit: Duration) -> bool {
        tokio::time::timeout(limit, idle_for(rx, HALF_HOUR)).await.is_ok()
    }

    #[tokio::test(start_paused = true)]
    async fn with_nobody_connected_it_ends_after_the_idle_time_and_not_before() {
        let (_tx, rx) = watch::channel(0usize);
        assert!(!ends_within(rx.clone(), HALF_HOUR - Duration::from_secs(1)).await);
        assert!(ends_within(rx, HALF_HOUR + Duration::from_secs(1)).await);
    }

    #[tokio::test(start_paused = true)]
    async fn a_connected_client_keeps_it_alive_and_its_leaving_restarts_the_wait() {
        let (tx, rx) = watch::channel(1usize);
        let idle = tokio::spawn(idle_for(rx, HALF_HOUR));
        tokio::time::sleep(HALF_HOUR * 4).await;
        assert!(!idle.is_finished(), "a connected client must keep the daemon up");
        tx.send_replace(0);
        tokio::time::sleep(HALF_HOUR - Duration::from_secs(60)).await;
        tx.send_replace(1);
        tx.send_replace(0);
        tokio::time::sleep(HALF_HOUR - Duration::from_secs(60)).await;
        assert!(!idle.is_finished(), "a client that came and went restarts the wait");
        tokio::time::sleep(Duration::from_secs(120)).await;
        tokio::task::yield_now().await;
        assert!(idle.is_finished());
    }
}
