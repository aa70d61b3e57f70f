//! The signals that stop skep in an orderly way (SIGTERM, SIGINT, SIGHUP:
//! the terminal or the grid's tmux server went away), shared by `serve` and `run`.

use tokio::signal::unix::{SignalKind, signal};

/// One of the three stop signals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StopSignal {
    Hangup,
    Interrupt,
    Terminate,
}

impl StopSignal {
    /// Its conventional name.
    pub(crate) fn name(self) -> &'static str {
        match self {
            StopSignal::Hangup => "SIGHUP",
            StopSignal::Interrupt => "SIGINT",
            StopSignal::Terminate => "SIGTERM",
        }
    }

    /// The exit status a shell expects from a process it ended: 128 + the signal's number.
    pub(crate) fn exit_code(self) -> u8 {
        let number = match self {
            StopSignal::Hangup => SignalKind::hangup(),
            StopSignal::Interrupt => SignalKind::interrupt(),
            StopSignal::Terminate => SignalKind::terminate(),
        }
        .as_raw_value();
        128 + number as u8
    }

    /// The one named `name`, as `name()` spells it.
    pub(crate) fn from_name(name: &str) -> Option<StopSignal> {
        [StopSignal::Hangup, StopSignal::Interrupt, StopSignal::Terminate].into_iter().find(|s| s.name() == name)
    }
}

/// Resolves with the first stop signal to arrive. Never resolves if the
/// handlers cannot be installed (then said once: the default action applies).
pub(crate) async fn next_stop_signal() -> StopSignal {
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) =
        (signal(SignalKind::terminate()), signal(SignalKind::interrupt()), signal(SignalKind::hangup()))
    else {
        tracing::warn!(
            "cannot listen for SIGTERM/SIGINT/SIGHUP; they will end skep without stopping its children first"
        );
        return std::future::pending().await;
    };
    let received = tokio::select! {
        _ = hup.recv() => StopSignal::Hangup,
        _ = term.recv() => StopSignal::Terminate,
        _ = int.recv() => StopSignal::Interrupt,
    };
    tracing::info!("{}: stopping", received.name());
    received
}
