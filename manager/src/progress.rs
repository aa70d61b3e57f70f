//! A progress line on stderr for `skep demo`: a bar redrawn in place on a
//! terminal, a line per quarter otherwise (logs and CI output stay readable).

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// At most ten redraws a second: more would cost the run it measures.
const REDRAW: Duration = Duration::from_millis(100);
const BAR_WIDTH: usize = 30;

/// A running progress display; callers bump the counter from [`Progress::counter`].
#[derive(Debug)]
pub struct Progress {
    done: Arc<AtomicUsize>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Progress {
    /// Starts drawing `label`'s progress towards `total`.
    pub fn start(label: &'static str, total: usize) -> Progress {
        let done = Arc::new(AtomicUsize::new(0));
        let stop = CancellationToken::new();
        let task = tokio::spawn(draw(label, total, Arc::clone(&done), stop.clone()));
        Progress { done, stop, task }
    }

    /// The counter of finished units.
    pub fn counter(&self) -> Arc<AtomicUsize> {
        Arc::clone(&self.done)
    }

    /// Draws the final state and stops.
    pub async fn finish(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

async fn draw(label: &'static str, total: usize, done: Arc<AtomicUsize>, stop: CancellationToken) {
    let terminal = std::io::stderr().is_terminal();
    let mut ticks = tokio::time::interval(REDRAW);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut quarters_shown = 0;
    loop {
        let stopping = tokio::select! {
            _ = ticks.tick() => false,
            () = stop.cancelled() => true,
        };
        let n = done.load(Ordering::Relaxed).min(total);
        let mut stderr = std::io::stderr().lock();
        // Progress is a courtesy: a failed write to stderr is not worth failing the run for.
        if terminal {
            let filled = n * BAR_WIDTH / total.max(1);
            let bar = format!("{}{}", "#".repeat(filled), ".".repeat(BAR_WIDTH - filled));
            let _ = write!(stderr, "\r{label} [{bar}] {n}/{total}");
            if stopping {
                // Erase the bar: the table that follows says it all.
                let _ = write!(stderr, "\r\x1b[K");
            }
        } else {
            while quarters_shown < n * 4 / total.max(1) {
                quarters_shown += 1;
                let _ = writeln!(stderr, "{label}: {}/{total} ({}%)", total * quarters_shown / 4, quarters_shown * 25);
            }
        }
        let _ = stderr.flush();
        if stopping {
            return;
        }
    }
}
