//! Kernel resource limits a child gets before it execs: open files, data
//! segment, CPU seconds, processes. Set in the forked child (`spawn.rs`), so
//! they bind the agent and everything it starts, and nothing of ours.

use std::time::Duration;

use rustix::process::{Resource, Rlimit};

/// The `rlimits` of a role: each `None` leaves skep's own limit in place.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rlimits {
    /// `RLIMIT_NOFILE`: the most open file descriptors of each process.
    pub nofile: Option<u64>,
    /// `RLIMIT_DATA`: the most heap and data memory of each process, in bytes.
    /// Never `RLIMIT_AS`, which V8 and many runtimes trip over by reserving address space.
    pub data: Option<u64>,
    /// `RLIMIT_CPU`: CPU time of each process (rounded up to whole seconds);
    /// SIGXCPU when reached, SIGKILL one second later.
    pub cpu: Option<Duration>,
    /// `RLIMIT_NPROC`: the most processes of the user the agent runs as
    /// (the kernel counts them per user, not per agent; root is exempt).
    pub nproc: Option<u64>,
}

impl Rlimits {
    /// Whether any limit is set.
    pub fn is_empty(&self) -> bool {
        *self == Rlimits::default()
    }

    /// The limits as (resource, soft, hard) triples, computed before the fork
    /// so the child only makes system calls.
    pub(super) fn plan(&self) -> Plan {
        let cpu = self.cpu.map(|d| d.as_secs() + u64::from(d.subsec_nanos() > 0));
        let mut plan = Plan::default();
        for (resource, soft, grace) in [
            (Resource::Nofile, self.nofile, 0),
            (Resource::Data, self.data, 0),
            // The soft limit sends SIGXCPU, which a runtime may catch to exit cleanly;
            // the hard one, a second later, kills.
            (Resource::Cpu, cpu, 1),
            (Resource::Nproc, self.nproc, 0),
        ] {
            if let Some(soft) = soft {
                plan.limits[plan.len] = Some((resource, soft, soft.saturating_add(grace)));
                plan.len += 1;
            }
        }
        plan
    }
}

/// What the child sets, without allocating.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Plan {
    limits: [Option<(Resource, u64, u64)>; 4],
    len: usize,
}

impl Plan {
    /// Sets the limits in the calling process. Runs between fork and exec:
    /// only system calls. A hard limit above the one we have cannot be raised
    /// without privilege, so it is lowered to ours rather than failing the start.
    pub(super) fn apply(&self) -> std::io::Result<()> {
        for &(resource, soft, hard) in self.limits.iter().flatten() {
            let ours = rustix::process::getrlimit(resource).maximum;
            let hard = ours.map_or(hard, |ours| hard.min(ours));
            let new = Rlimit { current: Some(soft.min(hard)), maximum: Some(hard) };
            rustix::process::setrlimit(resource, new)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_set_limits_are_planned_and_cpu_rounds_up_with_a_second_of_grace() {
        assert_eq!(Rlimits::default().plan().len, 0);
        let limits = Rlimits { nofile: Some(32), data: None, cpu: Some(Duration::from_millis(1500)), nproc: Some(64) };
        let plan = limits.plan();
        let planned: Vec<_> = plan.limits.iter().flatten().copied().collect();
        assert_eq!(planned, [(Resource::Nofile, 32, 32), (Resource::Cpu, 2, 3), (Resource::Nproc, 64, 64)]);
    }
}
