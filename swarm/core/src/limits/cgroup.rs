//! Whether this machine lets skep's user put agents in cgroup v2 groups of
//! their own (for `memory_max` and `cpu_max`), decided from /proc and the
//! cgroup filesystem without privilege. skep never asks for root: where the
//! answer is no, those two keys are reported as not enforced and `max_rss`
//! and `rlimits` remain the bounds.

use std::path::{Path, PathBuf};

/// The answer, with the reason when it is no.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Delegation {
    /// skep's cgroup is a cgroup v2 directory we may write, with these controllers available.
    Delegated { dir: PathBuf },
    /// Not usable here, and why.
    Unavailable { reason: String },
}

/// Looks at this process's cgroup.
pub(crate) fn detect(controllers: &[&str]) -> Delegation {
    let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
    detect_in(&read("/proc/self/cgroup"), &read("/proc/self/mountinfo"), Path::new("/"), controllers)
}

/// The decision, from the text of `/proc/self/cgroup` and `/proc/self/mountinfo`,
/// with mount points looked up under `root` (a test's fake tree, or `/`).
pub(crate) fn detect_in(cgroup: &str, mountinfo: &str, root: &Path, controllers: &[&str]) -> Delegation {
    let no = |reason: String| Delegation::Unavailable { reason };
    // cgroup v2 is the line with hierarchy 0 and no controller list.
    let Some(ours) = cgroup.lines().find_map(|l| l.strip_prefix("0::")) else {
        return no("this process is in no cgroup v2 hierarchy (/proc/self/cgroup has no 0:: line)".to_owned());
    };
    let Some(mount) = cgroup2_mount(mountinfo) else {
        return no("no cgroup2 filesystem is mounted".to_owned());
    };
    let dir = root.join(mount.trim_start_matches('/')).join(ours.trim_start_matches('/'));
    let available = std::fs::read_to_string(dir.join("cgroup.controllers")).unwrap_or_default();
    let available: Vec<&str> = available.split_whitespace().collect();
    if let Some(missing) = controllers.iter().find(|c| !available.contains(c)) {
        return no(format!(
            "the {missing} controller is not available in {} (it is held by a cgroup v1 hierarchy, or the \
             parent cgroup does not delegate it)",
            dir.display()
        ));
    }
    for file in [".", "cgroup.procs", "cgroup.subtree_control"] {
        let path = dir.join(file);
        if rustix::fs::access(&path, rustix::fs::Access::WRITE_OK).is_err() {
            return no(format!("{} is not writable by this user (the cgroup is not delegated)", path.display()));
        }
    }
    Delegation::Delegated { dir }
}

/// The mount point of the cgroup2 filesystem in a mountinfo text.
fn cgroup2_mount(mountinfo: &str) -> Option<&str> {
    mountinfo.lines().find_map(|line| {
        let (fields, fs) = line.split_once(" - ")?;
        (fs.split_whitespace().next() == Some("cgroup2")).then(|| fields.split_whitespace().nth(4))?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "4:memory:/x\n1:cpu:/\n0::/\n";
    const MOUNTS: &str = "31 1 0:30 / /sys/fs/cgroup ro - tmpfs tmpfs ro\n\
                          41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";

    fn tree(controllers: &str) -> tempfile::TempDir {
        let root = tempfile::tempdir().expect("temp dir");
        let dir = root.path().join("sys/fs/cgroup/unified/user.slice/skep");
        std::fs::create_dir_all(&dir).expect("fake cgroup");
        std::fs::write(dir.join("cgroup.controllers"), controllers).expect("controllers");
        std::fs::write(dir.join("cgroup.procs"), "").expect("procs");
        std::fs::write(dir.join("cgroup.subtree_control"), "").expect("subtree_control");
        root
    }

    #[test]
    fn a_writable_cgroup_with_the_controllers_is_delegated() {
        let root = tree("cpuset cpu io memory pids\n");
        let cgroup = "0::/user.slice/skep\n";
        let found = detect_in(cgroup, MOUNTS, root.path(), &["memory", "cpu"]);
        let dir = root.path().join("sys/fs/cgroup/unified/user.slice/skep");
        assert_eq!(found, Delegation::Delegated { dir });
    }

    #[test]
    fn a_hybrid_machine_whose_v1_holds_memory_is_not() {
        let root = tree("hugetlb\n");
        let found = detect_in("0::/user.slice/skep\n", MOUNTS, root.path(), &["memory", "cpu"]);
        let Delegation::Unavailable { reason } = found else { panic!("{found:?}") };
        assert!(reason.starts_with("the memory controller is not available in "), "{reason}");
    }

    #[test]
    fn no_v2_line_or_no_mount_is_not_delegated_and_says_which() {
        let root = tree("memory cpu");
        let no_line = detect_in("4:memory:/x\n", MOUNTS, root.path(), &["memory"]);
        assert!(
            matches!(&no_line, Delegation::Unavailable { reason } if reason.contains("no 0:: line")),
            "{no_line:?}"
        );
        let no_mount = detect_in(HYBRID, "31 1 0:30 / /sys ro - sysfs sysfs ro\n", root.path(), &["memory"]);
        assert!(
            matches!(&no_mount, Delegation::Unavailable { reason } if reason.contains("no cgroup2")),
            "{no_mount:?}"
        );
    }

    #[test]
    fn a_cgroup_we_cannot_write_is_not_delegated() {
        // Root may write anything; the check is only meaningful for other users.
        if rustix::process::geteuid().is_root() {
            let root = tree("memory cpu");
            let found = detect_in("0::/nowhere\n", MOUNTS, root.path(), &[]);
            assert!(matches!(found, Delegation::Unavailable { .. }), "a missing directory is not writable: {found:?}");
            return;
        }
        let root = tree("memory cpu");
        let procs = root.path().join("sys/fs/cgroup/unified/user.slice/skep/cgroup.procs");
        let mut mode = std::fs::metadata(&procs).expect("procs").permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut mode, 0o444);
        std::fs::set_permissions(&procs, mode).expect("chmod");
        let found = detect_in("0::/user.slice/skep\n", MOUNTS, root.path(), &["memory"]);
        assert!(matches!(&found, Delegation::Unavailable { reason } if reason.contains("not writable")), "{found:?}");
    }

    #[test]
    fn this_machine_gets_an_answer() {
        // Whatever the machine, detection must not panic and must explain a no.
        match detect(&["memory", "cpu"]) {
            Delegation::Delegated { dir } => assert!(dir.is_dir()),
            Delegation::Unavailable { reason } => assert!(!reason.is_empty()),
        }
    }
}
