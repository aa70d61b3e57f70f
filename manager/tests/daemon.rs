//! The shared daemon with real processes (reliability 29-33): `skep up`,
//! calls from many processes answered by the same warm agent, clients that
//! leave mid-call, a flooding client, reload, another uid, SIGKILL, idle exit,
//! and `skep run` on the daemon's agents.
//!
//! Every test has its own runtime and state directories and config, and runs
//! skep in its own directory, so config discovery finds that config.

#![allow(clippy::unwrap_used)] // a failed unwrap here is a failed test

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use skep_testkit::{test_agent, wait_gone};
use support::{dead, poll};

mod support;

const SKEP: &str = env!("CARGO_BIN_EXE_skep");
/// Bound on anything a test waits for.
const LIMIT: Duration = Duration::from_secs(60);

/// A Python agent that answers `pid` and `echo`, newline-framed.
const PY_AGENT: &str = r#"
import json, os, sys
for line in sys.stdin:
    msg = json.loads(line)
    if "id" not in msg:
        continue
    result = os.getpid() if msg["method"] == "pid" else msg.get("params")
    sys.stdout.write(json.dumps({"jsonrpc": "2.0", "id": msg["id"], "result": result}) + "\n")
    sys.stdout.flush()
"#;

/// A test's private world: runtime and state directories, a skep.toml, and
/// the daemon it may start, stopped (or killed) on drop.
struct World {
    root: PathBuf,
    _dir: tempfile::TempDir,
}

impl World {
    fn new(name: &str, config: &str) -> World {
        let dir = tempfile::Builder::new().prefix(&format!("skep-daemon-{name}-")).tempdir().expect("scratch");
        let root = dir.path().canonicalize().expect("canonical scratch");
        std::fs::DirBuilder::new().mode(0o700).create(root.join("run")).expect("runtime dir");
        std::fs::write(root.join("agent.py"), PY_AGENT).expect("agent written");
        let world = World { root, _dir: dir };
        world.write_config(config);
        world
    }

    fn config(&self) -> PathBuf {
        self.root.join("skep.toml")
    }

    fn write_config(&self, text: &str) {
        let text = text.replace("AGENT_PY", &self.root.join("agent.py").display().to_string());
        std::fs::write(self.config(), text.replace("TEST_AGENT", &test_agent())).expect("config written");
    }

    fn skep(&self, args: &[&str]) -> Command {
        let mut command = Command::new(SKEP);
        command
            .args(args)
            .current_dir(&self.root)
            .env("XDG_RUNTIME_DIR", self.root.join("run"))
            .env("XDG_STATE_HOME", self.root.join("state"))
            .env_remove("SKEP_NO_DAEMON")
            .env_remove("TMUX")
            .stdin(Stdio::null());
        command
    }

    fn run(&self, args: &[&str]) -> Output {
        self.skep(args).output().expect("skep runs")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.status.success(), "skep {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).expect("UTF-8")
    }

    fn call(&self, role: &str, method: &str, params: &str) -> Value {
        serde_json::from_str(self.ok(&["call", role, method, params]).trim()).expect("a JSON result")
    }

    fn status(&self) -> Value {
        serde_json::from_str(&self.ok(&["status", "--json"])).expect("status JSON")
    }

    fn socket(&self) -> PathBuf {
        PathBuf::from(self.status()["daemon"]["socket"].as_str().expect("a socket"))
    }

    fn agent_pids(&self, role: &str) -> Vec<u32> {
        let status = self.status();
        let agents = status["agents"].as_array().expect("agents").iter();
        agents.filter(|a| a["role"] == role && a["pid"] != 0).map(|a| a["pid"].as_u64().unwrap() as u32).collect()
    }

    /// The pid in the config's lock file (the daemon's, or its last one's).
    fn lock_pid(&self) -> Option<u32> {
        let run = self.root.join("run").join("skep");
        let lock = std::fs::read_dir(run)
            .ok()?
            .filter_map(Result::ok)
            .find(|e| e.path().extension() == Some("lock".as_ref()))?;
        std::fs::read_to_string(lock.path()).ok()?.trim().parse().ok()
    }
}

impl Drop for World {
    fn drop(&mut self) {
        let _ = self.skep(&["down"]).stderr(Stdio::null()).status();
        if let Some(pid) = self.lock_pid() {
            // SAFETY: a plain kill of a pid this test's daemon wrote.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
    }
}

/// A raw connection to the control socket, as any language would make one.
struct Conn {
    writer: UnixStream,
    reader: BufReader<UnixStream>,
}

impl Conn {
    fn open(socket: &Path) -> Conn {
        let writer = UnixStream::connect(socket).expect("connect");
        writer.set_read_timeout(Some(LIMIT)).expect("timeout");
        Conn { reader: BufReader::new(writer.try_clone().expect("clone")), writer }
    }

    fn send(&mut self, id: u64, method: &str, params: Value) {
        let line = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string() + "\n";
        self.writer.write_all(line.as_bytes()).expect("send");
    }

    fn recv(&mut self) -> Value {
        let mut line = String::new();
        self.reader.read_line(&mut line).expect("an answer within the limit");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"))
    }

    fn call(&mut self, id: u64, method: &str, params: Value) -> Value {
        self.send(id, method, params);
        self.recv()
    }
}

const PY_ROLE: &str = "[roles.py]\ncommand = [\"python3\", \"AGENT_PY\"]\nmin_warm = 1\nmax_agents = 1\n";

#[test]
fn calls_from_twenty_processes_share_one_warm_agent_and_down_leaves_nothing() {
    let world = World::new("share", PY_ROLE);
    let socket = PathBuf::from(world.ok(&["up"]).trim());
    assert!(socket.exists(), "skep up prints the socket it serves");
    let daemon = world.status()["daemon"]["pid"].as_u64().unwrap() as u32;
    let agent = world.agent_pids("py");
    assert_eq!(agent.len(), 1, "the warm agent is up when `skep up` returns");
    let pids: Vec<Value> = (0..20).map(|_| world.call("py", "pid", "[]")).collect();
    assert!(pids.iter().all(|p| *p == json!(agent[0])), "every call answered by the one warm agent: {pids:?}");
    // What every caller did is visible to every observer of the daemon.
    let stats: Value = serde_json::from_str(&world.ok(&["stats", "--json"])).unwrap();
    assert_eq!(stats["stats"]["roles"][0]["calls"], 20);
    let listed: Value = serde_json::from_str(&world.ok(&["ls", "--json"])).unwrap();
    assert_eq!(listed[0]["socket"], json!(socket));
    world.ok(&["down"]);
    assert!(!socket.exists(), "the socket goes with the daemon");
    assert!(dead(daemon) && dead(agent[0]), "no process is left");
    assert_eq!(world.run(&["status"]).status.code(), Some(3), "status says none runs");
}

#[test]
fn a_client_that_leaves_mid_call_has_it_cancelled_and_the_others_see_nothing() {
    let config = "[roles.t]\ncommand = [\"TEST_AGENT\"]\nmax_agents = 1\n[roles.u]\ncommand = [\"TEST_AGENT\"]\n";
    let world = World::new("leave", config);
    world.ok(&["up"]);
    let socket = world.socket();
    let mut leaving = Conn::open(&socket);
    let mut staying = Conn::open(&socket);
    leaving.send(1, "swarm/call", json!({"role": "t", "method": "sleep", "params": {"ms": 1500}}));
    poll("the call is on the agent", || world.status()["daemon"]["agents"]["busy"] == 1);
    drop(leaving);
    // The other client is served meanwhile, on another role and then on the same agent.
    assert_eq!(
        staying.call(1, "swarm/call", json!({"role": "u", "method": "echo", "params": [7]}))["result"],
        json!([7])
    );
    let cancelled = staying.call(2, "swarm/call", json!({"role": "t", "method": "cancelled", "params": []}));
    assert_eq!(cancelled["result"].as_array().map(Vec::len), Some(1), "the agent got $/cancelRequest: {cancelled}");
    let stats = staying.call(3, "swarm/stats", json!([]));
    let t = &stats["result"]["roles"].as_array().unwrap().iter().find(|r| r["role"] == "t").unwrap().clone();
    assert_eq!((t["cancelled"].as_u64(), t["calls"].as_u64()), (Some(1), Some(2)), "{t}");
}

#[test]
fn a_flooding_client_is_bounded_and_a_polite_one_is_still_served() {
    let config = "[daemon]\nmax_in_flight_per_client = 4\n\
                  [roles.t]\ncommand = [\"TEST_AGENT\"]\nmax_agents = 1\nqueue_timeout = \"60s\"\n";
    let world = World::new("flood", config);
    world.ok(&["up"]);
    let socket = world.socket();
    let mut flood = Conn::open(&socket);
    let mut polite = Conn::open(&socket);
    let burst: String = (1..=12)
        .map(|id| {
            let p = json!({"role": "t", "method": "sleep", "params": {"ms": 300}});
            json!({"jsonrpc": "2.0", "id": id, "method": "swarm/call", "params": p}).to_string() + "\n"
        })
        .collect();
    flood.writer.write_all(burst.as_bytes()).unwrap();
    for id in 1..=3 {
        let answer = polite.call(id, "swarm/call", json!({"role": "t", "method": "echo", "params": [id]}));
        assert_eq!(answer["result"], json!([id]), "the polite client is served: {answer}");
    }
    let answers: Vec<Value> = (0..12).map(|_| flood.recv()).collect();
    let overloaded = answers.iter().filter(|a| a["error"]["code"] == -32004).count();
    let served = answers.iter().filter(|a| a["result"]["slept"] == 300).count();
    assert_eq!(overloaded + served, 12, "{answers:?}");
    assert!(
        served >= 4 && overloaded >= 1,
        "the flood is held to its bound of 4: {served} served, {overloaded} refused"
    );
}

#[test]
fn a_broken_config_is_refused_and_a_changed_one_is_reloaded_before_a_call() {
    let world = World::new("reload", PY_ROLE);
    world.ok(&["up"]);
    let first = world.call("py", "pid", "[]");
    world.write_config(&format!("{PY_ROLE}max_calls = \"many\"\n"));
    let refused = world.run(&["reload"]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("skep.toml:5") && stderr.contains("max_calls"), "the error points at the key: {stderr}");
    // The old config keeps serving, on the same agent.
    assert_eq!(world.call("py", "pid", "[]"), first);
    // A valid change: the next call finds the file newer than the daemon's copy and reloads first.
    world.write_config(&PY_ROLE.replace("max_agents = 1", "max_agents = 1\nmax_calls = 500"));
    // Newer by a clear margin, whatever the file system's timestamp granularity.
    let later = std::time::SystemTime::now() + Duration::from_secs(1);
    std::fs::File::options().write(true).open(world.config()).unwrap().set_modified(later).unwrap();
    let out = world.run(&["call", "py", "pid", "[]"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("reloaded"), "{}", String::from_utf8_lossy(&out.stderr));
    let second: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_ne!(second, first, "the changed role rolled over to a new agent");
    wait_gone_blocking(first.as_u64().unwrap() as u32);
}

/// `[daemon]`, `[mcp]` and `[cluster]` are read at the start: a reload that
/// finds one changed applies the roles, keeps the table it runs with, and
/// names it, on `skep reload` and on a command that reloads first.
#[test]
fn a_reload_names_the_tables_it_applies_only_at_the_next_start() {
    let world = World::new("pending", &format!("[daemon]\nidle_exit = \"10m\"\n{PY_ROLE}"));
    world.ok(&["up"]);
    let idle_exit = |world: &World| world.status()["daemon"]["idleExitMs"].clone();
    assert_eq!(idle_exit(&world), 600_000);
    world.write_config(&format!("[daemon]\nidle_exit = \"20m\"\n{PY_ROLE}max_calls = 500\n"));
    let said = world.ok(&["reload"]);
    assert!(said.contains("replaced py"), "the role rolled over: {said}");
    let pending = said.lines().find(|l| l.starts_with("pending")).unwrap_or_else(|| panic!("no pending line: {said}"));
    assert!(pending.contains("[daemon]") && !pending.contains("[mcp]"), "{pending}");
    assert_eq!(idle_exit(&world), 600_000, "the running daemon keeps the idle exit it started with");
    // A command that finds the file newer reloads first, and says the same.
    world.write_config(&format!("[daemon]\nidle_exit = \"30m\"\n{PY_ROLE}"));
    let later = std::time::SystemTime::now() + Duration::from_secs(1);
    std::fs::File::options().write(true).open(world.config()).unwrap().set_modified(later).unwrap();
    let out = world.run(&["call", "py", "echo", "[1]"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("reloaded its roles") && stderr.contains("[daemon] changed too"), "{stderr}");
    // After a restart, the file's value holds.
    world.ok(&["down"]);
    world.ok(&["up"]);
    assert_eq!(idle_exit(&world), 1_800_000);
}

fn wait_gone_blocking(pid: u32) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(wait_gone(&[pid], "the replaced agent"));
}

#[test]
fn another_uid_is_refused_at_connect() {
    // SAFETY: getuid cannot fail.
    let root = unsafe { libc::getuid() } == 0;
    let setpriv = Command::new("setpriv").arg("--version").output().is_ok_and(|o| o.status.success());
    if !root || !setpriv || !Path::new("/usr/bin/python3").exists() {
        eprintln!("skipped: needs root, setpriv and /usr/bin/python3 to act as another user");
        return;
    }
    let world = World::new("uid", PY_ROLE);
    world.ok(&["up"]);
    let socket = world.socket();
    // Open every door but the peer-uid check, so that check alone must refuse.
    let dirs = [world.root.clone(), world.root.join("run"), world.root.join("run").join("skep")];
    for dir in &dirs {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o711)).unwrap();
    }
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    // Prints what the daemon answered; b'' when it closed (or reset) the connection instead.
    let probe = r#"
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(30)
s.connect(sys.argv[1])
try:
    s.sendall(b'{"jsonrpc":"2.0","id":1,"method":"daemon/status"}\n')
    print(repr(s.recv(4096)))
except (ConnectionResetError, BrokenPipeError):
    print(repr(b''))
"#;
    let socket_arg = socket.display().to_string();
    let out = Command::new("setpriv")
        // The system's Python: one under root's home is out of another user's reach.
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/python3", "-c", probe, &socket_arg])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    // Connected (the socket is open to all now), then closed (or reset) without an answer.
    assert_eq!(stdout.trim(), "b''", "another uid got an answer: {stdout} {}", String::from_utf8_lossy(&out.stderr));
    for dir in &dirs {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    let log = world.status()["daemon"]["log"].as_str().unwrap().to_owned();
    assert!(std::fs::read_to_string(log).unwrap().contains("peer uid 65534"), "the refusal is logged");
    assert!(world.call("py", "pid", "[]").is_u64(), "our own user is still served");
}

#[test]
fn a_killed_daemon_takes_its_agents_and_the_next_call_starts_a_fresh_one() {
    let world = World::new("kill", "[roles.t]\ncommand = [\"TEST_AGENT\"]\nmax_agents = 1\n");
    world.ok(&["up"]);
    let daemon = world.status()["daemon"]["pid"].as_u64().unwrap() as u32;
    let agents = world.agent_pids("t");
    let mut waiting = world.skep(&["call", "t", "sleep", r#"{"ms": 30000}"#]).stderr(Stdio::piped()).spawn().unwrap();
    poll("the call is on the agent", || world.status()["daemon"]["agents"]["busy"] == 1);
    // SAFETY: killing the daemon this test started.
    unsafe { libc::kill(daemon as i32, libc::SIGKILL) };
    let mut status = None;
    poll("the waiting call fails rather than hangs", || {
        status = waiting.try_wait().unwrap();
        status.is_some()
    });
    assert_eq!(status.unwrap().code(), Some(75), "the documented exit status for a daemon gone mid-call");
    wait_gone_blocking(agents[0]);
    assert_eq!(world.call("t", "echo", "[1]"), json!([1]), "the next call starts a fresh daemon");
    assert_ne!(world.status()["daemon"]["pid"].as_u64().unwrap() as u32, daemon);
}

#[test]
fn an_idle_daemon_exits_by_itself() {
    let world = World::new("idle", &format!("[daemon]\nidle_exit = \"1s\"\n{PY_ROLE}"));
    let agent = world.call("py", "pid", "[]").as_u64().unwrap() as u32;
    let daemon = world.lock_pid().expect("the daemon wrote its pid");
    poll("the idle daemon exits", || dead(daemon));
    wait_gone_blocking(agent);
    assert_eq!(world.run(&["status"]).status.code(), Some(3));
}

#[test]
fn skep_run_reuses_the_daemons_warm_agents() {
    let world = World::new("run", PY_ROLE);
    std::fs::write(
        world.root.join("wf.toml"),
        "name = \"wf\"\n[[steps]]\nid = \"a\"\nrole = \"py\"\nmethod = \"pid\"\n\
         [[steps]]\nid = \"b\"\nneeds = [\"a\"]\nrole = \"py\"\nmethod = \"echo\"\nparams = { pid = \"${steps.a.result}\" }\n",
    )
    .unwrap();
    world.ok(&["up"]);
    let agent = world.agent_pids("py");
    let out = world.ok(&["run", "wf.toml", "--no-cache"]);
    assert!(out.contains("profile: "), "{out}");
    let profile = out.lines().find_map(|l| l.strip_prefix("profile: ")).unwrap();
    let record: Value = serde_json::from_str(&std::fs::read_to_string(profile).unwrap()).unwrap();
    assert_eq!(record["ok"], true, "{record}");
    assert_eq!(world.agent_pids("py"), agent, "the run used the warm agent, started none");
    let stats: Value = serde_json::from_str(&world.ok(&["stats", "--json"])).unwrap();
    assert_eq!(stats["stats"]["roles"][0]["calls"], 2);
}
