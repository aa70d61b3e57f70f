//! Progress an agent reports for a call (`$/progress {id, fraction?, message?}`,
//! docs/protocol.md), relayed to whoever waits for the call.
//!
//! The swarm always turns it into a `callProgress` event (the grid's panes
//! show the last one). A caller that wants it as well runs its calls inside
//! [`with_progress`]: a task-local, so that fan-out, caches and coordination
//! pass it through without every signature carrying a sink.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use skep_bridge::Notification;

/// The notification an agent sends to report a call's progress.
pub const PROGRESS_METHOD: &str = "$/progress";

/// How far a call has got, as its agent said.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// Done so far, from 0 to 1, when the agent knows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fraction: Option<f64>,
    /// What the agent is doing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Where a caller's progress goes; called on a connection's reader task, so it must not block.
pub type ProgressSink = Arc<dyn Fn(Progress) + Send + Sync>;

tokio::task_local! {
    static SINK: ProgressSink;
}

/// Runs `calls` with the progress of every call it makes (in this task) sent to `sink`.
pub async fn with_progress<F: Future>(sink: impl Fn(Progress) + Send + Sync + 'static, calls: F) -> F::Output {
    SINK.scope(Arc::new(sink), calls).await
}

/// The sink of the calls running in this task, if any.
pub(crate) fn current_sink() -> Option<ProgressSink> {
    SINK.try_with(Arc::clone).ok()
}

/// The progress in a notification, if it is a well-formed `$/progress`.
pub(crate) fn parse(notification: &Notification) -> Option<Progress> {
    if notification.method != PROGRESS_METHOD {
        return None;
    }
    let progress: Progress = serde_json::from_str(notification.params.as_deref()?.get()).ok()?;
    let fraction_ok = progress.fraction.is_none_or(|f| (0.0..=1.0).contains(&f));
    fraction_ok.then_some(progress)
}

#[cfg(test)]
mod tests {
    use serde_json::value::RawValue;

    use super::*;

    fn notification(method: &str, params: &str) -> Notification {
        Notification {
            method: method.to_owned(),
            params: Some(RawValue::from_string(params.to_owned()).expect("JSON")),
        }
    }

    #[test]
    fn only_well_formed_progress_is_taken() {
        let half = Progress { fraction: Some(0.5), message: Some("half".into()) };
        assert_eq!(parse(&notification("$/progress", r#"{"id":1,"fraction":0.5,"message":"half"}"#)), Some(half));
        let words = Progress { fraction: None, message: Some("m".into()) };
        assert_eq!(parse(&notification("$/progress", r#"{"id":1,"message":"m"}"#)), Some(words));
        assert_eq!(parse(&notification("$/progress", r#"{"id":1,"fraction":1.5}"#)), None);
        assert_eq!(parse(&notification("$/progress", r#"{"id":1,"fraction":"half"}"#)), None);
        assert_eq!(parse(&notification("progress", r#"{"id":1,"fraction":0.5}"#)), None);
    }
}
