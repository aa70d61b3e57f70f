//! Preload roles against a real Python: a warm parent imports the modules
//! once, each call forks it and runs the script unchanged as `__main__`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use skep_swarm::{CallOptions, Protocol, RoleConfig, Swarm};
use skep_testkit::{GONE_LIMIT, call, call_with, eventually, gone, pids_in, start, wait_for_file, wait_gone};

/// A module whose import is recorded in a file: one line per import, with the importing pid.
const HEAVY: &str = r#"
import os
COUNTER = 0
with open(os.environ["IMPORT_LOG"], "a") as log:
    log.write(f"{os.getpid()}\n")
"#;

/// An unmodified script: argv, stdin, its process tree, and a global it changes.
const TOOL: &str = r#"
import json, os, sys, time
import heavy
heavy.COUNTER += 1
mode = sys.argv[1] if len(sys.argv) > 1 else "report"
if mode == "hang":
    # A grandchild in the call's group, then the pids for the test, then nothing.
    import subprocess
    sleeper = subprocess.Popen(["sleep", "1000"])
    with open(sys.argv[2] + ".tmp", "w") as f:
        f.write(f"{os.getpid()} {sleeper.pid}")
    os.rename(sys.argv[2] + ".tmp", sys.argv[2])
    time.sleep(1000)
print("a note", file=sys.stderr)
print(json.dumps({
    "name": __name__,
    "argv": sys.argv[1:],
    "stdin": sys.stdin.read(),
    "pid": os.getpid(),
    "group": os.getpgid(0),
    "parent": os.getppid(),
    "counter": heavy.COUNTER,
}))
sys.exit(4 if mode == "fail" else 0)
"#;

struct Scripts {
    dir: tempfile::TempDir,
}

impl Scripts {
    fn new() -> Scripts {
        let dir = tempfile::Builder::new().prefix("skep-preload-").tempdir().expect("temp dir");
        std::fs::write(dir.path().join("heavy.py"), HEAVY).expect("heavy.py");
        std::fs::write(dir.path().join("tool.py"), TOOL).expect("tool.py");
        Scripts { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn role(&self, name: &str) -> RoleConfig {
        let mut role = RoleConfig::with_command(name, vec!["python3".to_owned()]);
        role.protocol = Protocol::Preload { script: self.path("tool.py"), modules: vec!["heavy".to_owned()] };
        role.handshake = skep_swarm::Handshake::Initialize;
        role.env.insert("IMPORT_LOG".to_owned(), self.path("imports").display().to_string());
        role.min_warm = 1;
        role.max_agents = 1;
        role.timeout = Duration::from_secs(20);
        role
    }

    fn imports(&self) -> Vec<u32> {
        pids_in(&self.path("imports"))
    }

    /// Processes whose command line names this directory: warm parents,
    /// their keepers (forks of the parent, same command line) and calls.
    fn processes(&self) -> Vec<u32> {
        let dir = self.dir.path().display().to_string();
        let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
        entries
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| {
                let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                String::from_utf8_lossy(&cmdline).contains(&dir) && !gone(*pid)
            })
            .collect()
    }

    /// Polls until nothing started for these scripts is left.
    async fn all_gone(&self, after: &str) {
        eventually(&format!("no process of the role left after {after}"), GONE_LIMIT, || self.processes().is_empty())
            .await;
    }
}

async fn run(swarm: &Swarm, role: &str, params: Value) -> Value {
    call(swarm, role, "run", params).await.expect("the script ran")
}

#[tokio::test]
async fn each_call_forks_the_warm_parent_and_runs_the_script_unchanged() {
    let scripts = Scripts::new();
    let swarm = start(vec![scripts.role("tool")]).await;
    let parent = swarm.agents().await[0].pid;

    let first = run(&swarm, "tool", json!({"args": ["report", "x"], "stdin": "hello"})).await;
    assert_eq!((first["exitCode"].as_i64(), first["status"].as_str()), (Some(0), Some("exit code 0")));
    assert_eq!(first["stderr"], "a note\n");
    let out = &first["json"];
    assert_eq!((out["name"].as_str(), out["stdin"].as_str()), (Some("__main__"), Some("hello")));
    assert_eq!(out["argv"], json!(["report", "x"]));
    assert_eq!(first["stdout"].as_str().map(|s| serde_json::from_str::<Value>(s).ok()), Some(Some(out.clone())));
    // Forked from the warm parent, and leading a process group of its own.
    assert_eq!(out["parent"].as_u64(), Some(u64::from(parent)));
    assert_eq!(out["group"], out["pid"]);
    assert_ne!(out["pid"].as_u64(), Some(u64::from(parent)));

    // Without "stdin" the params are the script's stdin, as for command roles.
    let second = run(&swarm, "tool", json!({"text": "as JSON"})).await;
    assert_eq!(second["json"]["stdin"], r#"{"text": "as JSON"}"#);
    // Isolation: what one call changed in a preloaded module is gone for the next.
    assert_eq!((first["json"]["counter"].as_i64(), second["json"]["counter"].as_i64()), (Some(1), Some(1)));
    // A failing script is a result, with its exit code, as for command roles.
    let failed = run(&swarm, "tool", json!({"args": ["fail"]})).await;
    assert_eq!((failed["exitCode"].as_i64(), failed["status"].as_str()), (Some(4), Some("exit code 4")));

    // The module was imported once, by the warm parent, for all three calls.
    assert_eq!(scripts.imports(), vec![parent]);
    // The warm parent and its keeper, seen by the check that they are gone below.
    let running = scripts.processes();
    assert!(running.len() == 2 && running.contains(&parent), "{running:?}");
    swarm.shutdown().await;
    wait_gone(&[parent], "the warm parent after shutdown").await;
    scripts.all_gone("shutdown (the keeper included)").await;
}

#[tokio::test]
async fn a_call_past_its_timeout_loses_its_whole_process_group_and_the_role_recovers() {
    let scripts = Scripts::new();
    let swarm = start(vec![scripts.role("tool")]).await;
    let pid_file = scripts.path("hang-pids");
    let hang = {
        let params = json!({"args": ["hang", pid_file.display().to_string()]});
        let options = CallOptions { timeout: Some(Duration::from_secs(3)), ..CallOptions::default() };
        let swarm = swarm.clone();
        tokio::spawn(async move { call_with(&swarm, "tool", "run", params, options).await })
    };
    wait_for_file(&pid_file).await;
    let pids = pids_in(&pid_file);
    assert_eq!(pids.len(), 2, "the script and its grandchild");
    let err = hang.await.expect("the call task").expect_err("timed out");
    assert_eq!(err.code(), -32001, "{err}");
    wait_gone(&pids, "a timed-out call's child and grandchild").await;
    // A new warm parent takes the next call.
    assert_eq!(run(&swarm, "tool", json!({})).await["exitCode"], 0);
    swarm.shutdown().await;
}

#[tokio::test]
async fn the_warm_parent_is_recycled_after_max_calls_and_restarted_when_it_dies() {
    let scripts = Scripts::new();
    let mut role = scripts.role("tool");
    role.max_calls = 2;
    let swarm = start(vec![role]).await;
    let parent_of = |v: &Value| v["json"]["parent"].as_u64().expect("the script's warm parent");

    let a = parent_of(&run(&swarm, "tool", json!({})).await);
    let b = parent_of(&run(&swarm, "tool", json!({})).await);
    let c = parent_of(&run(&swarm, "tool", json!({})).await);
    assert_eq!(a, b, "two calls on one warm parent");
    assert_ne!(b, c, "max_calls = 2 recycled the parent");
    wait_gone(&[a as u32], "the recycled warm parent").await;

    // SIGKILL the warm parent: the pool starts another, which imports again.
    let victim = c as u32;
    // SAFETY: a plain kill(2) of a process this test's swarm started.
    unsafe { libc::kill(victim as libc::pid_t, libc::SIGKILL) };
    eventually("the killed parent to be gone", GONE_LIMIT, || gone(victim)).await;
    // Calls may fail fast while the pool restarts it: poll until one succeeds.
    let deadline = Instant::now() + GONE_LIMIT;
    let next = loop {
        match call(&swarm, "tool", "run", json!({})).await {
            Ok(v) => break parent_of(&v),
            Err(_) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(e) => panic!("no call succeeded on a restarted parent: {e}"),
        }
    };
    assert_ne!(next, c);
    assert_eq!(scripts.imports().len(), 3, "each warm parent imported the module once: {:?}", scripts.imports());
    swarm.shutdown().await;
}

#[tokio::test]
async fn a_module_that_fails_to_import_fails_the_role_with_its_traceback() {
    let scripts = Scripts::new();
    let mut role = scripts.role("broken");
    role.protocol = Protocol::Preload { script: scripts.path("tool.py"), modules: vec!["no_such_module_here".into()] };
    let swarm = start(vec![role]).await;
    let err = call(&swarm, "broken", "run", json!({})).await.expect_err("cannot start");
    assert!(matches!(err.code(), -32003 | -32004), "{err}");
    let text = format!("{err:?}");
    assert!(text.contains("No module named 'no_such_module_here'"), "{text}");
    swarm.shutdown().await;
}

/// A call's processes live in a group of their own (so its timeout can kill
/// them all), out of reach of the agent group's clean-up: when the warm
/// parent is killed outright, they must still not outlive it.
#[tokio::test]
async fn a_call_in_flight_dies_with_its_killed_warm_parent_grandchildren_included() {
    let scripts = Scripts::new();
    let swarm = start(vec![scripts.role("tool")]).await;
    let parent = swarm.agents().await[0].pid;
    let pid_file = scripts.path("hang-pids");
    let hang = {
        let params = json!({"args": ["hang", pid_file.display().to_string()]});
        let swarm = swarm.clone();
        tokio::spawn(async move { call(&swarm, "tool", "run", params).await })
    };
    wait_for_file(&pid_file).await;
    let pids = pids_in(&pid_file);
    // SAFETY: a plain kill(2) of the warm parent this test's swarm started.
    unsafe { libc::kill(parent as libc::pid_t, libc::SIGKILL) };
    let err = hang.await.expect("the call task").expect_err("its agent died");
    assert_eq!(err.code(), -32003, "{err}");
    wait_gone(&pids, "the call's script and grandchild after their warm parent was killed").await;
    swarm.shutdown().await;
    scripts.all_gone("the warm parent was killed and the swarm shut down").await;
}
