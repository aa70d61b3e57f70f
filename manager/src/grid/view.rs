//! What one agent pane shows, as plain code: events and `swarm/agents`
//! snapshots go in, a frame of text comes out. No I/O, time passed in.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::stats::{micros, percent, size};

/// Finished calls the pane lists.
const RECENT: usize = 8;

/// One agent pane's state.
#[derive(Debug)]
pub struct AgentView {
    agent: String,
    pid: u64,
    state: String,
    calls: u64,
    /// "rss 1.0 GiB  cpu 12%", from the last `swarm/agents`; empty before a sample.
    usage: String,
    /// Calls running: method, start, and the last progress the agent reported.
    in_progress: Vec<(String, Instant, Option<String>)>,
    recent: VecDeque<String>,
    stderr: String,
    notes: Vec<String>,
    ended: bool,
}

impl AgentView {
    /// The view of `agent`; `replaces` names the agent whose pane this was.
    pub fn new(agent: &str, replaces: Option<&str>) -> AgentView {
        let notes = replaces.map(|old| format!("restarted: replaces {old}")).into_iter().collect();
        AgentView {
            agent: agent.to_owned(),
            pid: 0,
            state: "starting".to_owned(),
            calls: 0,
            usage: String::new(),
            in_progress: Vec::new(),
            recent: VecDeque::new(),
            stderr: String::new(),
            notes,
            ended: false,
        }
    }

    /// Folds in one event about this agent or its role.
    pub fn apply(&mut self, event: &Value, now: Instant) {
        let str_of = |key: &str| event[key].as_str().unwrap_or("?").to_owned();
        match event["type"].as_str().unwrap_or("") {
            "agentReady" => {
                self.pid = event["pid"].as_u64().unwrap_or(self.pid);
                self.state = "idle".into();
            }
            "agentBusy" => self.state = "busy".into(),
            "agentIdle" => self.state = "idle".into(),
            "callStarted" => self.in_progress.push((str_of("method"), now, None)),
            "callProgress" => {
                let method = str_of("method");
                if let Some(call) = self.in_progress.iter_mut().rev().find(|(m, ..)| *m == method) {
                    call.2 = Some(progress_text(event));
                }
            }
            "callFinished" => {
                let method = str_of("method");
                if let Some(i) = self.in_progress.iter().position(|(m, ..)| *m == method) {
                    self.in_progress.remove(i);
                }
                let outcome = match &event["outcome"] {
                    Value::String(s) => s.clone(),
                    other => match other["error"].as_i64() {
                        Some(code) => format!("error {code}"),
                        None => other.to_string(),
                    },
                };
                let took = micros(event["durationUs"].as_u64().unwrap_or(0));
                self.calls += 1;
                self.recent.push_front(format!("{method} {took} {outcome}"));
                self.recent.truncate(RECENT);
            }
            "agentExited" => {
                self.state = "exited".into();
                self.in_progress.clear();
                let how = str_of("status");
                let note = match event["expected"].as_bool() {
                    Some(true) => format!("stopped by skep ({how})"),
                    _ => format!("crashed: {how}; restarting"),
                };
                self.notes.push(note);
            }
            "agentRestarting" if self.state == "exited" => {
                let delay = event["delayMs"].as_u64().unwrap_or(0);
                self.notes.push(format!("role restarting an agent in {delay} ms"));
            }
            "agentRecycled" => self.notes.push(format!("recycled: {}", str_of("reason"))),
            "breakerChanged" => self.notes.push(format!("breaker {} -> {}", str_of("from"), str_of("to"))),
            "roleFailed" => self.notes.push(format!("role failed: {}", str_of("reason"))),
            "lagged" => self.notes.push(format!("missed {} events (too slow)", event["missed"])),
            _ => {}
        }
        let keep = self.notes.len().saturating_sub(4);
        self.notes.drain(..keep);
    }

    /// Takes pid, state, calls and stderr from a `swarm/agents` answer.
    pub fn refresh(&mut self, agents: &Value) {
        let Some(me) = agents.as_array().into_iter().flatten().find(|a| a["id"] == self.agent.as_str()) else {
            return;
        };
        self.pid = me["pid"].as_u64().unwrap_or(self.pid);
        self.calls = me["calls"].as_u64().unwrap_or(self.calls);
        if let Some(state) = me["state"].as_str() {
            self.state = state.to_owned();
        }
        self.stderr = me["stderrTail"].as_str().unwrap_or("").to_owned();
        self.usage = match me["rssBytes"].is_u64() {
            true => format!("  rss {}  cpu {}", size(&me["rssBytes"]), percent(&me["cpuPercent"])),
            false => String::new(),
        };
    }

    /// The orchestrator went away.
    pub fn end(&mut self) {
        self.ended = true;
    }

    /// Whether a redraw would change the elapsed time shown.
    pub fn ticking(&self) -> bool {
        !self.in_progress.is_empty()
    }

    /// The frame: lines of at most `width` characters, at most `height` of them.
    pub fn render(&self, now: Instant, width: usize, height: usize) -> Vec<String> {
        let mut lines =
            vec![format!("{}  pid {}  {}  calls {}{}", self.agent, self.pid, self.state, self.calls, self.usage)];
        if self.ended {
            lines.push("orchestrator ended; this grid is closing".to_owned());
        }
        lines.extend(self.notes.iter().cloned());
        for (method, since, progress) in &self.in_progress {
            let elapsed = micros(now.saturating_duration_since(*since).as_micros().max(1) as u64);
            match progress {
                Some(progress) => lines.push(format!("> {method} {elapsed} {progress}")),
                None => lines.push(format!("> {method} {elapsed}")),
            }
        }
        lines.extend(self.recent.iter().map(|r| format!("  {r}")));
        let stderr: Vec<&str> = self.stderr.lines().collect();
        if !stderr.is_empty() {
            lines.push("-- stderr".to_owned());
            let room = height.saturating_sub(lines.len()).max(1);
            lines.extend(stderr[stderr.len().saturating_sub(room)..].iter().map(|l| (*l).to_owned()));
        }
        lines.truncate(height.max(1));
        lines.iter().map(|l| clean(l, width)).collect()
    }
}

/// "40% loading model": an agent's last `$/progress` for a call.
fn progress_text(event: &Value) -> String {
    let percent = event["fraction"].as_f64().map(|f| format!("{:.0}%", f * 100.0));
    let message = event["message"].as_str().map(str::to_owned);
    [percent, message].into_iter().flatten().collect::<Vec<_>>().join(" ")
}

/// Printable characters only (an agent's stderr must not drive the terminal
/// or set the pane's title), cut to `width`.
pub fn clean(line: &str, width: usize) -> String {
    line.chars().map(|c| if c.is_control() { '?' } else { c }).take(width).collect()
}

/// At most 60 redraws per second.
pub const FRAME: Duration = Duration::from_micros(16_667);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_call_shows_in_progress_then_in_the_recent_list() {
        let t = Instant::now();
        let mut v = AgentView::new("r/1", None);
        v.apply(&json!({"type": "agentReady", "pid": 42}), t);
        v.apply(&json!({"type": "callStarted", "method": "review"}), t);
        let frame = v.render(t + Duration::from_millis(3), 80, 20);
        assert_eq!(frame[0], "r/1  pid 42  idle  calls 0");
        assert_eq!(frame[1], "> review 3.0ms");
        v.apply(&json!({"type": "callFinished", "method": "review", "durationUs": 1500, "outcome": "ok"}), t);
        let frame = v.render(t, 80, 20);
        assert_eq!(frame, ["r/1  pid 42  idle  calls 1", "  review 1.5ms ok"]);
        v.apply(&json!({"type": "callFinished", "method": "x", "durationUs": 90, "outcome": {"error": -32601}}), t);
        assert_eq!(v.render(t, 80, 20)[1], "  x 90µs error -32601");
    }

    #[test]
    fn a_running_call_shows_the_last_progress_its_agent_reported() {
        let t = Instant::now();
        let mut v = AgentView::new("r/1", None);
        v.apply(&json!({"type": "callStarted", "method": "summarize"}), t);
        let progress =
            |f: f64, m: &str| json!({"type": "callProgress", "method": "summarize", "fraction": f, "message": m});
        v.apply(&progress(0.25, "reading"), t);
        v.apply(&progress(0.4, "loading model"), t);
        assert_eq!(v.render(t + Duration::from_millis(2), 80, 20)[1], "> summarize 2.0ms 40% loading model");
        v.apply(&json!({"type": "callProgress", "method": "summarize", "message": "no fraction"}), t);
        assert_eq!(v.render(t + Duration::from_millis(2), 80, 20)[1], "> summarize 2.0ms no fraction");
        v.apply(&json!({"type": "callFinished", "method": "summarize", "durationUs": 9, "outcome": "ok"}), t);
        assert_eq!(v.render(t, 80, 20)[1], "  summarize 9µs ok");
    }

    #[test]
    fn a_crash_is_reported_and_stderr_is_made_harmless() {
        let t = Instant::now();
        let mut v = AgentView::new("r/2", Some("r/1"));
        v.apply(&json!({"type": "agentExited", "status": "killed by SIGKILL", "expected": false}), t);
        v.refresh(
            &json!([{"id": "r/2", "pid": 7, "state": "idle", "calls": 3, "stderrTail": "ok\n\u{1b}]2;pwn\u{7}\n"}]),
        );
        let frame = v.render(t, 12, 10);
        assert_eq!(frame[1], "restarted: r");
        assert_eq!(frame[2], "crashed: kil");
        assert_eq!(frame[frame.len() - 1], "?]2;pwn?");
        assert_eq!(v.render(t, 80, 3).len(), 3);
        assert_eq!(v.render(t, 80, 3)[0], "r/2  pid 7  idle  calls 3", "no usage shown before a sample");
    }

    #[test]
    fn a_recycle_says_why_and_the_header_shows_memory_and_cpu() {
        let t = Instant::now();
        let mut v = AgentView::new("r/1", None);
        v.apply(&json!({"type": "agentReady", "pid": 42}), t);
        v.refresh(&json!([{"id": "r/1", "pid": 42, "state": "recycling", "calls": 3, "rssBytes": 157_286_400_u64,
            "cpuPercent": 7.6, "stderrTail": ""}]));
        let reason = "RSS 150.0 MiB over max_rss 100.0 MiB";
        v.apply(&json!({"type": "agentRecycled", "cause": "memory", "reason": reason}), t);
        let frame = v.render(t, 80, 10);
        assert_eq!(frame[0], "r/1  pid 42  recycling  calls 3  rss 150.0 MiB  cpu 8%");
        assert_eq!(frame[1], format!("recycled: {reason}"));
    }
}
