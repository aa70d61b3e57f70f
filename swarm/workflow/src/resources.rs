//! What a step used: CPU time and peak memory of a command step from the
//! kernel's rusage of its process (taken when the process runner reaps it),
//! and for an agent call the agent process's CPU time across the call, read
//! from `/proc/<pid>/stat` when the call starts and when it ends.

use serde::{Deserialize, Serialize};
use skep_swarm::Usage;

/// One step's resource figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Resources {
    /// CPU time in user mode, in milliseconds.
    pub cpu_user_ms: f64,
    /// CPU time in the kernel, in milliseconds.
    pub cpu_system_ms: f64,
    /// Peak resident memory in bytes (command steps only).
    pub peak_rss_bytes: Option<u64>,
    /// Where the figures come from: `rusage` (the command's own, exact) or
    /// `proc` (the agent's CPU across the call, in clock ticks).
    pub source: String,
    /// The agent may have served other calls meanwhile, whose CPU is counted too.
    pub approximate: bool,
}

impl Resources {
    /// User plus system time.
    pub fn cpu_ms(&self) -> f64 {
        self.cpu_user_ms + self.cpu_system_ms
    }

    /// A command's figures from its rusage.
    pub fn from_usage(usage: Usage) -> Resources {
        Resources {
            cpu_user_ms: usage.user.as_secs_f64() * 1000.0,
            cpu_system_ms: usage.system.as_secs_f64() * 1000.0,
            peak_rss_bytes: Some(usage.max_rss_bytes),
            source: "rusage".into(),
            approximate: false,
        }
    }

    /// An agent's CPU between two readings of its `/proc` counters.
    pub fn across(before: ProcCpu, after: ProcCpu, approximate: bool) -> Resources {
        Resources {
            cpu_user_ms: (after.user_ms - before.user_ms).max(0.0),
            cpu_system_ms: (after.system_ms - before.system_ms).max(0.0),
            peak_rss_bytes: None,
            source: "proc".into(),
            approximate,
        }
    }
}

/// A process's CPU counters at one moment, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcCpu {
    /// User time so far.
    pub user_ms: f64,
    /// System time so far.
    pub system_ms: f64,
}

/// The CPU counters of process `pid` from `/proc/<pid>/stat`; none if it is gone.
pub fn proc_cpu(pid: u32) -> Option<ProcCpu> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text, ticks_per_second())
}

fn ticks_per_second() -> f64 {
    // SAFETY: sysconf reads a constant of the system; no memory is involved.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

/// utime and stime are fields 14 and 15, counted after the command name,
/// which is in parentheses and may itself hold spaces and parentheses.
fn parse_stat(text: &str, ticks: f64) -> Option<ProcCpu> {
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name, field 3 (state) is index 0, so field 14 is index 11.
    let tick = |i: usize| fields.get(i)?.parse::<f64>().ok();
    Some(ProcCpu { user_ms: tick(11)? * 1000.0 / ticks, system_ms: tick(12)? * 1000.0 / ticks })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_read_after_an_odd_command_name() {
        let stat = "1234 (a (b) c) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 1 0 99 1000 10";
        assert_eq!(parse_stat(stat, 100.0), Some(ProcCpu { user_ms: 2500.0, system_ms: 750.0 }));
        assert_eq!(parse_stat("garbage", 100.0), None);
    }

    #[test]
    fn this_process_has_cpu_counters() {
        let me = proc_cpu(std::process::id()).expect("our own /proc entry");
        assert!(me.user_ms >= 0.0 && me.system_ms >= 0.0);
    }
}
