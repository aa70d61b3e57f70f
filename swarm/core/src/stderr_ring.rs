//! An agent's stderr, always drained: the last [`STDERR_RING_CAPACITY`] bytes
//! are kept for error reports, and complete lines are re-logged through
//! `tracing` (target `skep::agent`) under a per-second budget.
//!
//! The drain task must never wait on anything but the pipe: a full 64 KiB pipe
//! blocks the agent's next write, which looks exactly like a hang. Lines over the
//! logging budget are only kept in the ring and counted.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;
use tokio::process::ChildStderr;

/// How many bytes of an agent's stderr are kept.
pub const STDERR_RING_CAPACITY: usize = 64 * 1024;

/// Lines re-logged per agent per [`LOG_WINDOW`]; the rest are counted.
const LOG_LINES_PER_WINDOW: u32 = 50;
const LOG_WINDOW: Duration = Duration::from_secs(1);
/// Longer lines are cut in the log (the ring keeps them whole).
const MAX_LOGGED_LINE: usize = 1024;
const READ_CHUNK: usize = 8 * 1024;

/// A cheap, cloneable view of an agent's stderr ring.
#[derive(Clone, Default)]
pub struct StderrTail {
    ring: Arc<Mutex<Ring>>,
    /// Cancelled when the drain reaches end of input.
    drained: tokio_util::sync::CancellationToken,
}

impl StderrTail {
    /// The last lines of stderr, at most `max_bytes` of them, as lossy UTF-8.
    pub fn tail(&self, max_bytes: usize) -> String {
        String::from_utf8_lossy(&self.lock().tail(max_bytes)).into_owned()
    }

    /// Bytes currently held (never more than [`STDERR_RING_CAPACITY`]).
    pub fn buffered_len(&self) -> usize {
        self.lock().buf.len()
    }

    /// Bytes read from the agent's stderr so far, kept or not.
    pub fn total_bytes(&self) -> u64 {
        self.lock().total
    }

    /// Waits until every byte the agent wrote has reached the ring, at most
    /// `bound`: after an exit the pipe may still hold the last lines, and a
    /// grandchild holding stderr open may keep it from ever ending.
    pub async fn drained(&self, bound: Duration) {
        let _ = tokio::time::timeout(bound, self.drained.cancelled()).await;
    }

    fn push(&self, chunk: &[u8]) {
        self.lock().push(chunk);
    }

    fn lock(&self) -> MutexGuard<'_, Ring> {
        // The ring is plain bytes, valid after any panic mid-push.
        self.ring.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl fmt::Debug for StderrTail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ring = self.lock();
        f.debug_struct("StderrTail").field("buffered", &ring.buf.len()).field("total", &ring.total).finish()
    }
}

struct Ring {
    buf: VecDeque<u8>,
    total: u64,
    /// Whether bytes were dropped from the front in the middle of a line, so
    /// the oldest kept line is partial.
    front_cut_mid_line: bool,
}

impl Default for Ring {
    fn default() -> Self {
        Self { buf: VecDeque::with_capacity(STDERR_RING_CAPACITY), total: 0, front_cut_mid_line: false }
    }
}

impl Ring {
    fn push(&mut self, chunk: &[u8]) {
        self.total += chunk.len() as u64;
        let chunk = if chunk.len() > STDERR_RING_CAPACITY {
            let cut = chunk.len() - STDERR_RING_CAPACITY;
            self.buf.clear();
            self.front_cut_mid_line = chunk[cut - 1] != b'\n';
            &chunk[cut..]
        } else {
            chunk
        };
        let overflow = (self.buf.len() + chunk.len()).saturating_sub(STDERR_RING_CAPACITY);
        if overflow > 0 {
            self.front_cut_mid_line = self.buf[overflow - 1] != b'\n';
            self.buf.drain(..overflow);
        }
        self.buf.extend(chunk);
    }

    fn tail(&self, max_bytes: usize) -> Vec<u8> {
        let start = self.buf.len() - max_bytes.min(self.buf.len());
        let mut out: Vec<u8> = self.buf.range(start..).copied().collect();
        let cut_mid_line = if start > 0 { self.buf[start - 1] != b'\n' } else { self.front_cut_mid_line };
        // Start at a line boundary, unless that would leave nothing but a newline.
        if cut_mid_line {
            match out.iter().position(|&b| b == b'\n') {
                Some(newline) if newline + 1 < out.len() => drop(out.drain(..=newline)),
                _ => {}
            }
        }
        out
    }
}

/// Splits a byte stream into lines, keeping at most [`MAX_LOGGED_LINE`] bytes of each.
#[derive(Default)]
struct LineSplitter {
    partial: Vec<u8>,
}

impl LineSplitter {
    fn feed(&mut self, mut chunk: &[u8], mut on_line: impl FnMut(&[u8])) {
        while let Some(newline) = chunk.iter().position(|&b| b == b'\n') {
            let (line, rest) = (&chunk[..newline], &chunk[newline + 1..]);
            if self.partial.is_empty() {
                on_line(&line[..line.len().min(MAX_LOGGED_LINE)]);
            } else {
                self.keep(line);
                on_line(&self.partial);
                self.partial.clear();
            }
            chunk = rest;
        }
        self.keep(chunk);
    }

    fn keep(&mut self, bytes: &[u8]) {
        let room = MAX_LOGGED_LINE - self.partial.len();
        self.partial.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    fn finish(&mut self, on_line: impl FnOnce(&[u8])) {
        if !self.partial.is_empty() {
            on_line(&self.partial);
            self.partial.clear();
        }
    }
}

/// A fixed-window budget of log lines.
#[derive(Debug, Default)]
struct LogBudget {
    window_start: Option<Instant>,
    logged: u32,
    suppressed: u64,
}

impl LogBudget {
    /// Whether a line seen at `now` may be logged; when a new window opens,
    /// also how many lines the previous one suppressed.
    fn admit(&mut self, now: Instant) -> (bool, Option<u64>) {
        let mut report = None;
        if self.window_start.is_none_or(|start| now.duration_since(start) >= LOG_WINDOW) {
            self.window_start = Some(now);
            self.logged = 0;
            report = self.take_suppressed();
        }
        if self.logged < LOG_LINES_PER_WINDOW {
            self.logged += 1;
            (true, report)
        } else {
            self.suppressed += 1;
            (false, report)
        }
    }

    fn take_suppressed(&mut self) -> Option<u64> {
        (self.suppressed > 0).then(|| std::mem::take(&mut self.suppressed))
    }
}

/// Starts draining `stderr` into a new ring; the task ends at EOF, which the
/// group kill guarantees once the agent is gone.
pub(crate) fn spawn_drain(stderr: ChildStderr, role: String, pid: u32) -> StderrTail {
    let tail = StderrTail::default();
    tokio::spawn(drain(stderr, tail.clone(), role, pid));
    tail
}

async fn drain(mut stderr: ChildStderr, tail: StderrTail, role: String, pid: u32) {
    let _drained = tail.drained.clone().drop_guard();
    let mut buf = vec![0; READ_CHUNK];
    let mut lines = LineSplitter::default();
    let mut budget = LogBudget::default();
    let log_line = |line: &[u8]| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        tracing::info!(target: "skep::agent", role = %role, pid, "{}", String::from_utf8_lossy(line));
    };
    let report = |suppressed: u64| {
        tracing::warn!(target: "skep::agent", role = %role, pid, suppressed, "stderr lines over the log budget, kept in the ring only");
    };
    loop {
        let n = match stderr.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::debug!(target: "skep::agent", role = %role, pid, error = %e, "stderr read failed");
                break;
            }
        };
        tail.push(&buf[..n]);
        // One clock read per chunk: a flood of short lines stays cheap.
        let now = Instant::now();
        lines.feed(&buf[..n], |line| {
            let (admitted, suppressed) = budget.admit(now);
            if let Some(suppressed) = suppressed {
                report(suppressed);
            }
            if admitted {
                log_line(line);
            }
        });
    }
    lines.finish(|line| {
        if budget.admit(Instant::now()).0 {
            log_line(line);
        }
    });
    if let Some(suppressed) = budget.take_suppressed() {
        report(suppressed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_keeps_the_last_bytes_only() {
        let mut ring = Ring::default();
        for i in 0..10_000 {
            ring.push(format!("line {i}\n").as_bytes());
        }
        assert_eq!(ring.buf.len(), STDERR_RING_CAPACITY);
        assert!(ring.total > STDERR_RING_CAPACITY as u64);
        assert_eq!(String::from_utf8_lossy(&ring.tail(25)), "line 9998\nline 9999\n");
        let all = ring.tail(usize::MAX);
        assert!(all.starts_with(b"line "), "the partial first line is dropped");
    }

    #[test]
    fn ring_takes_a_huge_chunk() {
        let mut ring = Ring::default();
        let chunk = vec![b'x'; 3 * STDERR_RING_CAPACITY];
        ring.push(&chunk);
        assert_eq!(ring.buf.len(), STDERR_RING_CAPACITY);
        assert_eq!(ring.total, chunk.len() as u64);
        // No newline at all: the partial line is all there is, so it is kept.
        assert_eq!(ring.tail(10), b"xxxxxxxxxx");
    }

    #[test]
    fn tail_keeps_a_lone_partial_line() {
        let mut ring = Ring::default();
        ring.push(b"first\nsecond without newline");
        assert_eq!(ring.tail(10), b"ut newline");
        assert_eq!(ring.tail(100), b"first\nsecond without newline");
    }

    #[test]
    fn splitter_joins_chunks_and_caps_lines() {
        let mut lines = Vec::new();
        let mut splitter = LineSplitter::default();
        splitter.feed(b"ab", |l| lines.push(l.to_vec()));
        splitter.feed(b"c\nd\n", |l| lines.push(l.to_vec()));
        let long = vec![b'y'; 3 * MAX_LOGGED_LINE];
        splitter.feed(&long, |l| lines.push(l.to_vec()));
        splitter.feed(b"\ntail", |l| lines.push(l.to_vec()));
        splitter.finish(|l| lines.push(l.to_vec()));
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[0], b"abc");
        assert_eq!(lines[1], b"d");
        assert_eq!(lines[2].len(), MAX_LOGGED_LINE);
        assert_eq!(lines[3], b"tail");
    }

    #[test]
    fn budget_counts_what_it_drops_and_reports_it_once() {
        let mut budget = LogBudget::default();
        let t0 = Instant::now();
        let admitted = (0..LOG_LINES_PER_WINDOW + 7).filter(|_| budget.admit(t0).0).count();
        assert_eq!(admitted, LOG_LINES_PER_WINDOW as usize);
        assert_eq!(budget.admit(t0 + LOG_WINDOW), (true, Some(7)));
        assert_eq!(budget.admit(t0 + LOG_WINDOW), (true, None));
    }
}
