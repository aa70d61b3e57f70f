//! A worker's subscription read as requests: each message that wants a
//! reply, until the worker stops. On stop the subscription is drained, so
//! messages the server already sent still arrive and get their answer.

use async_nats::{Message, Subject, Subscriber};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

/// The requests on one subscription; see the module doc.
pub(crate) struct Requests {
    sub: Subscriber,
    stop: CancellationToken,
    draining: bool,
    /// What the subscription is for, in log lines.
    what: String,
}

impl Requests {
    pub(crate) fn new(sub: Subscriber, stop: CancellationToken, what: String) -> Requests {
        Requests { sub, stop, draining: false, what }
    }

    /// The next request and its reply subject; `None` once drained (or when
    /// draining fails). Messages without a reply subject are skipped.
    pub(crate) async fn next(&mut self) -> Option<(Message, Subject)> {
        loop {
            let message = tokio::select! {
                biased;
                () = self.stop.cancelled(), if !self.draining => {
                    self.draining = true;
                    if let Err(e) = self.sub.drain().await {
                        tracing::warn!(what = %self.what, %e, "cannot drain the subscription");
                        return None;
                    }
                    continue;
                }
                message = self.sub.next() => message?,
            };
            if let Some(reply) = message.reply.clone() {
                return Some((message, reply));
            }
        }
    }
}
