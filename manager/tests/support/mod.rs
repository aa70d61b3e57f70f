//! What the observe-socket and grid tests share: a private runtime directory
//! per test, a config of 2 roles x 3 demo agents, a sidecar guard, polling.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub const SKEP: &str = env!("CARGO_BIN_EXE_skep");
/// Bound on anything a test waits for (agents start, panes appear, processes end).
pub const LIMIT: Duration = Duration::from_secs(60);

/// A private `XDG_RUNTIME_DIR` and a skep.toml; on drop stops any tmux
/// server left in it, then its `tempfile` guard removes the directory.
pub struct Scratch {
    pub root: PathBuf,
    pub config: PathBuf,
    /// Owns `root`; dropped (and so removed) after [`Scratch`]'s own `drop`.
    _dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new(name: &str) -> Scratch {
        let dir = tempfile::Builder::new().prefix(&format!("skep-test-{name}-")).tempdir().expect("scratch dir");
        let root = dir.path().to_path_buf();
        std::fs::DirBuilder::new().mode(0o700).recursive(true).create(root.join("run")).expect("scratch dir");
        let config = root.join("skep.toml");
        let roles: String = ["alpha", "beta"]
            .iter()
            .map(|role| {
                format!("[roles.{role}]\ncommand = [\"{SKEP}\", \"agent\", \"demo\"]\nmin_warm = 3\nmax_agents = 3\n")
            })
            .collect();
        std::fs::write(&config, roles).expect("config written");
        Scratch { root, config, _dir: dir }
    }

    /// The observe directory skep uses under this scratch runtime dir.
    pub fn observe_dir(&self) -> PathBuf {
        self.root.join("run").join("skep")
    }

    /// A `skep` command with this scratch runtime dir.
    pub fn skep(&self, args: &[&str]) -> Command {
        let mut command = Command::new(SKEP);
        // Each test says whether it wants a daemon: by default, a throw-away orchestrator.
        command
            .args(args)
            .env("XDG_RUNTIME_DIR", self.root.join("run"))
            .env("XDG_STATE_HOME", self.root.join("state"))
            .env("SKEP_NO_DAEMON", "1")
            .env_remove("TMUX");
        command
    }

    /// Runs `skep` to completion.
    pub fn run(&self, args: &[&str]) -> Output {
        self.skep(args).stdin(Stdio::null()).output().expect("skep runs")
    }

    /// Runs `skep`, asserting success, and returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "skep {args:?} failed: {stderr}");
        String::from_utf8(out.stdout).expect("UTF-8")
    }

    /// Files left in the observe directory.
    pub fn leftovers(&self) -> Vec<String> {
        std::fs::read_dir(self.observe_dir())
            .map(|d| d.filter_map(Result::ok).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        for file in self.leftovers().iter().filter(|f| f.ends_with(".tmux")) {
            let _ = Command::new("tmux").arg("-S").arg(self.observe_dir().join(file)).arg("kill-server").output();
        }
    }
}

/// `skep serve --observe` as an app would run it, killed on drop.
pub struct Sidecar {
    pub child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    next_id: u64,
}

impl Sidecar {
    pub fn start(scratch: &Scratch, extra: &[&str]) -> Sidecar {
        let config = scratch.config.to_str().expect("UTF-8");
        let mut args = vec!["serve", "--config", config, "--observe"];
        args.extend(extra);
        let mut child = scratch
            .skep(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("skep serve starts");
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().expect("piped"));
        Sidecar { child, stdin, stdout, next_id: 1 }
    }

    /// Sends a request without waiting for the answer.
    pub fn send(&mut self, method: &str, params: Value) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        let line = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string() + "\n";
        let stdin = self.stdin.as_mut().expect("still open");
        stdin.write_all(line.as_bytes()).and_then(|()| stdin.flush()).expect("serve reads");
        id
    }

    /// The next answer.
    pub fn answer(&mut self) -> Value {
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("serve answers");
        serde_json::from_str(&line).expect("JSON")
    }

    /// Closes stdin (the sidecar stops its agents and exits) and waits, bounded.
    pub fn finish(&mut self) {
        drop(self.stdin.take());
        poll("skep serve exits", || self.child.try_wait().expect("waitable").is_some());
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `done` until it holds, failing the test at [`LIMIT`].
pub fn poll(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + LIMIT;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Dead: gone, or a zombie (it no longer runs).
pub fn dead(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

/// The pids of the orchestrator's agents, from `skep stats --json`.
pub fn agent_pids(stats: &Value) -> Vec<u32> {
    stats["agents"].as_array().expect("agents").iter().map(|a| a["pid"].as_u64().expect("pid") as u32).collect()
}

/// Whether `path` exists (a socket counts).
pub fn exists(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok()
}

/// A child killed (and reaped) on drop, so a failing test leaves nothing running.
pub struct Guard(pub Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
