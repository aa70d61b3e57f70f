//! `skep run` stopped by a signal (issue 12): SIGTERM and SIGINT stop the
//! run in order (groups killed, the run recorded as cancelled, exit 128 + N);
//! after SIGKILL the watcher kills what is left. In every case nothing of the
//! process tree survives, not even a grandchild that ignores SIGTERM.

mod support;

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;
use support::{Guard, SKEP, dead, poll};

/// A workflow whose first step starts a grandchild that ignores SIGTERM,
/// writes "its own pid and the grandchild's" to `pids`, and waits.
fn workflow(dir: &Path) -> PathBuf {
    let pids = dir.join("pids");
    let script = format!("trap '' TERM; sleep 1000 & echo $$ $! > {0}.tmp && mv {0}.tmp {0}; wait", pids.display());
    let argv = serde_json::to_string(&["/bin/sh", "-c", &script]).expect("JSON");
    let text = format!(
        "[[steps]]\nid = \"tree\"\nrun = {argv}\ncache = false\n\n[[steps]]\nid = \"after\"\nneeds = [\"tree\"]\nrun = [\"true\"]\n"
    );
    let file = dir.join("wf.toml");
    std::fs::write(&file, text).expect("workflow written");
    file
}

/// Runs the workflow, sends `signal` to `skep run` once the tree is up, and
/// checks that nothing of it survives; returns how skep ended and its record.
fn stop_run_with(signal: i32, name: &str) -> (std::process::ExitStatus, Option<Value>) {
    let dir = tempfile::Builder::new().prefix(&format!("skep-signal-{name}-")).tempdir().expect("scratch dir");
    let file = workflow(dir.path());
    let child = Command::new(SKEP)
        .env("SKEP_NO_DAEMON", "1")
        .arg("run")
        .arg(&file)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("skep run starts");
    let mut guard = Guard(child);
    let pids_file = dir.path().join("pids");
    poll("the step has started its grandchild", || pids_file.exists());
    let text = std::fs::read_to_string(&pids_file).expect("pids");
    let mut pids: Vec<u32> = text.split_whitespace().map(|p| p.parse().expect("a pid")).collect();
    assert_eq!(pids.len(), 2, "{text}");
    let skep = guard.0.id();
    pids.push(skep);
    // SAFETY: kill takes plain integers; the pid is our unreaped child.
    assert_eq!(unsafe { libc::kill(skep as libc::pid_t, signal) }, 0);
    let mut status = None;
    poll("skep run exits", || {
        status = guard.0.try_wait().expect("waitable");
        status.is_some()
    });
    poll(&format!("nothing of the tree survives {name}: {pids:?}"), || pids.iter().all(|&p| dead(p)));
    let runs = dir.path().join(".skep").join("runs");
    let record = std::fs::read_dir(&runs).ok().and_then(|mut d| d.next()).map(|entry| {
        let text = std::fs::read_to_string(entry.expect("a run").path()).expect("readable");
        serde_json::from_str(&text).expect("JSON")
    });
    (status.expect("exited"), record)
}

fn assert_recorded_as_cancelled(record: Option<Value>, name: &str) {
    let record = record.expect("the run was recorded");
    assert_eq!(record["cancelled"], name, "{record}");
    assert_eq!(record["ok"], false);
    let steps = record["steps"].as_array().expect("steps");
    assert_eq!(steps[0]["outcome"], "failed", "{record}");
    assert!(steps[0]["error"].as_str().is_some_and(|e| e.contains(name)), "{record}");
    assert_eq!(steps[1]["outcome"], "skipped", "{record}");
    assert!(steps[1]["error"].as_str().is_some_and(|e| e.contains(name)), "{record}");
}

#[test]
fn sigterm_stops_the_run_kills_its_groups_and_records_it() {
    let (status, record) = stop_run_with(libc::SIGTERM, "SIGTERM");
    assert_eq!(status.code(), Some(143), "{status}");
    assert_recorded_as_cancelled(record, "SIGTERM");
}

#[test]
fn sigint_stops_the_run_kills_its_groups_and_records_it() {
    let (status, record) = stop_run_with(libc::SIGINT, "SIGINT");
    assert_eq!(status.code(), Some(130), "{status}");
    assert_recorded_as_cancelled(record, "SIGINT");
}

/// A closed terminal: SIGHUP ends the run like the other stop signals.
#[test]
fn sighup_stops_the_run_kills_its_groups_and_records_it() {
    let (status, record) = stop_run_with(libc::SIGHUP, "SIGHUP");
    assert_eq!(status.code(), Some(129), "{status}");
    assert_recorded_as_cancelled(record, "SIGHUP");
}

#[test]
fn sigkill_leaves_nothing_of_the_tree_behind() {
    let (status, record) = stop_run_with(libc::SIGKILL, "SIGKILL");
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status}");
    assert!(record.is_none(), "a killed run cannot record itself");
}

/// Issue 19 item 3: `skep serve` killed with SIGKILL. Its agent dies of the
/// parent-death signal; the agent's detached grandchild (double fork, still
/// in the agent's group, ignoring SIGTERM) is killed by the watcher.
#[test]
fn a_killed_sidecar_leaves_no_grandchild_of_its_agents() {
    let dir = tempfile::Builder::new().prefix("skep-serve-kill-").tempdir().expect("scratch dir");
    let pids_file = dir.path().join("pids");
    let script = format!(
        "trap '' TERM; sh -c 'sleep 1000 & echo $! > {0}.tmp'; echo $$ >> {0}.tmp; mv {0}.tmp {0}; exec cat",
        pids_file.display()
    );
    let command = serde_json::to_string(&["/bin/sh", "-c", &script]).expect("JSON");
    let config = dir.path().join("skep.toml");
    std::fs::write(&config, format!("[roles.tree]\ncommand = {command}\nmin_warm = 1\n")).expect("config");
    let child = Command::new(SKEP)
        .env("SKEP_NO_DAEMON", "1")
        .arg("serve")
        .arg("--config")
        .arg(&config)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("skep serve starts");
    let mut guard = Guard(child);
    poll("the agent has started its grandchild", || pids_file.exists());
    let text = std::fs::read_to_string(&pids_file).expect("pids");
    let pids: Vec<u32> = text.split_whitespace().map(|p| p.parse().expect("a pid")).collect();
    assert_eq!(pids.len(), 2, "{text}");
    guard.0.kill().expect("SIGKILL");
    guard.0.wait().expect("reaped");
    poll(&format!("nothing of the agent's tree survives: {pids:?}"), || pids.iter().all(|&p| dead(p)));
}
