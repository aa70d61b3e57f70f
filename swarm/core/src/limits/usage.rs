//! What an agent costs: the resident memory and CPU time of its whole
//! process group (the agent and everything it started that stayed in its
//! group), read from /proc with the `procfs` crate.
//!
//! A group's members cannot be listed without scanning /proc, so one scan
//! samples every group of a role at once, on a blocking thread.

use std::collections::BTreeMap;

use tokio::time::Instant;

/// One process group's usage at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct GroupUsage {
    /// Resident memory of every member, in bytes.
    pub rss_bytes: u64,
    /// CPU time of every member and of their reaped children, in clock ticks.
    pub cpu_ticks: u64,
    /// Members seen.
    pub processes: u32,
}

/// Samples the process groups led by `groups` (agents lead their own groups).
/// Groups with no member left are absent from the answer.
pub(crate) fn sample_groups(groups: &[u32]) -> BTreeMap<u32, GroupUsage> {
    let mut found = BTreeMap::new();
    if groups.is_empty() {
        return found;
    }
    let Ok(processes) = procfs::process::all_processes() else { return found };
    let page = procfs::page_size();
    // A process may exit between the listing and the read: skip it.
    for stat in processes.flatten().filter_map(|p| p.stat().ok()) {
        let Ok(group) = u32::try_from(stat.pgrp) else { continue };
        if !groups.contains(&group) {
            continue;
        }
        let usage: &mut GroupUsage = found.entry(group).or_default();
        usage.rss_bytes += stat.rss * page;
        let children = u64::try_from(stat.cutime.max(0) + stat.cstime.max(0)).unwrap_or(0);
        usage.cpu_ticks += stat.utime + stat.stime + children;
        usage.processes += 1;
    }
    found
}

/// The resident memory of one process (not its group), in bytes; `None` once it is gone.
pub(crate) fn leader_rss(pid: u32) -> Option<u64> {
    let statm = procfs::process::Process::new(i32::try_from(pid).ok()?).ok()?.statm().ok()?;
    Some(statm.resident * procfs::page_size())
}

/// Turns a group's cumulative CPU ticks into a percentage of one CPU over
/// the time between two samples (200% is two CPUs busy).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct CpuMeter {
    last: Option<(u64, Instant)>,
    percent: Option<f64>,
}

impl CpuMeter {
    /// Records a sample taken at `at`; `hz` is the kernel's clock ticks per second.
    pub(crate) fn record(&mut self, ticks: u64, at: Instant, hz: u64) {
        if let Some((before, then)) = self.last {
            let wall = at.saturating_duration_since(then).as_secs_f64();
            // A member that left the group takes its ticks along: never below zero.
            let used = ticks.saturating_sub(before) as f64 / hz.max(1) as f64;
            if wall > 0.0 {
                self.percent = Some(used / wall * 100.0);
            }
        }
        self.last = Some((ticks, at));
    }

    /// The CPU use between the last two samples; `None` until there are two.
    pub(crate) fn percent(&self) -> Option<f64> {
        self.percent
    }
}

/// The kernel's clock ticks per second (`sysconf(_SC_CLK_TCK)`).
pub(crate) fn ticks_per_second() -> u64 {
    procfs::ticks_per_second()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn cpu_percent_is_ticks_over_wall_time_between_two_samples() {
        let start = Instant::now();
        let mut meter = CpuMeter::default();
        meter.record(1000, start, 100);
        assert_eq!(meter.percent(), None, "one sample says nothing about a rate");
        meter.record(1050, start + Duration::from_secs(1), 100);
        assert_eq!(meter.percent(), Some(50.0));
        meter.record(1450, start + Duration::from_secs(3), 100);
        assert_eq!(meter.percent(), Some(200.0), "two CPUs busy for two seconds");
        // A member left with its ticks: the sum went down, which is not negative use.
        meter.record(900, start + Duration::from_secs(4), 100);
        assert_eq!(meter.percent(), Some(0.0));
        // Two samples at the same instant keep the last rate.
        meter.record(950, start + Duration::from_secs(4), 100);
        assert_eq!(meter.percent(), Some(0.0));
    }

    #[test]
    fn our_own_group_is_sampled_and_unknown_groups_are_absent() {
        let ours = u32::try_from(rustix::process::getpgrp().as_raw_nonzero().get()).expect("a positive pgid");
        let sampled = sample_groups(&[ours, u32::MAX - 1]);
        let usage = sampled.get(&ours).expect("our group has a member: us");
        assert!(usage.processes >= 1 && usage.rss_bytes > 0, "{usage:?}");
        assert!(!sampled.contains_key(&(u32::MAX - 1)));
        assert!(sample_groups(&[]).is_empty());
    }
}
