//! Agent supervision against real processes (the `skep-test-agent` binary).
//!
//! Every test is bounded by [`TEST_LIMIT`], polls against deadlines instead of
//! sleeping, and ends by checking that no process of the agent's group survives
//! and that the agent was reaped.

use std::collections::BTreeMap;
use std::future::Future;
use std::io::{self, Write};
use std::process::ExitStatus;
use std::time::Duration;

use serde_json::{Value, json};
use skep_swarm::{ChildProcess, STDERR_RING_CAPACITY, SpawnError, SpawnSpec, StopOutcome, describe_exit};
use skep_testkit::eventually;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{ChildStdin, ChildStdout};

const AGENT: &str = env!("CARGO_BIN_EXE_skep-test-agent");
const TEST_LIMIT: Duration = Duration::from_secs(30);
const GRACE: Duration = Duration::from_millis(300);
/// Long enough for init to reap orphans on a loaded machine.
const CLEANUP_LIMIT: Duration = Duration::from_secs(10);

fn spec(flags: &[&str]) -> SpawnSpec {
    SpawnSpec {
        role: "tester".into(),
        command: std::iter::once(AGENT).chain(flags.iter().copied()).map(String::from).collect(),
        cwd: None,
        env: BTreeMap::new(),
        env_passthrough: vec!["PATH".into()],
        rlimits: Default::default(),
    }
}

async fn spawn(flags: &[&str]) -> ChildProcess {
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    ChildProcess::spawn(&spec(flags)).await.expect("spawn the test agent")
}

async fn bounded<T>(test: impl Future<Output = T>) -> T {
    tokio::time::timeout(TEST_LIMIT, test).await.expect("test timed out")
}

/// A minimal NDJSON client: enough to drive the test agent.
struct Conn {
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
    next_id: u64,
    /// Lines on stdout that were not JSON.
    noise: Vec<String>,
}

impl Conn {
    fn new(agent: &mut ChildProcess) -> Conn {
        let (stdin, stdout) = agent.take_stdio().expect("stdio not taken yet");
        Conn { stdin, lines: BufReader::new(stdout).lines(), next_id: 1, noise: Vec::new() }
    }

    async fn send(&mut self, method: &str, params: Value) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        let line = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string() + "\n";
        self.stdin.write_all(line.as_bytes()).await.expect("write request");
        id
    }

    async fn reply(&mut self, id: u64) -> Value {
        loop {
            let line = self.lines.next_line().await.expect("read stdout").expect("a reply before EOF");
            match serde_json::from_str::<Value>(&line) {
                Ok(reply) if reply["id"] == json!(id) => return reply,
                Ok(other) => panic!("unexpected reply {other}"),
                Err(_) => self.noise.push(line),
            }
        }
    }

    async fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.send(method, params).await;
        self.reply(id).await
    }
}

fn errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// Whether any process (zombies included) is still in group `pgid`.
fn group_exists(pgid: u32) -> bool {
    // SAFETY: signal 0 only checks that the group exists.
    let found = unsafe { libc::kill(-(pgid as libc::pid_t), 0) } == 0;
    found || errno() != libc::ESRCH
}

/// Whether `pid` runs (exists and is not a zombie).
fn is_live(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.trim_start().chars().next());
    !matches!(state, None | Some('Z' | 'X'))
}

/// Whether our child `pid` has been reaped; looks without reaping it.
fn is_reaped(pid: u32) -> bool {
    // SAFETY: siginfo_t is plain data for which all zeroes is valid.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    let flags = libc::WEXITED | libc::WNOHANG | libc::WNOWAIT;
    // SAFETY: info is a valid out-pointer; WNOWAIT leaves any zombie in place.
    let failed = unsafe { libc::waitid(libc::P_PID, pid as libc::id_t, &mut info, flags) } == -1;
    failed && errno() == libc::ECHILD
}

async fn assert_nothing_left(pid: u32) {
    assert!(is_reaped(pid), "agent {pid} is not reaped");
    eventually("no process of the agent's group survives", CLEANUP_LIMIT, || !group_exists(pid)).await;
}

fn signal_of(status: ExitStatus) -> Option<i32> {
    std::os::unix::process::ExitStatusExt::signal(&status)
}

#[tokio::test]
async fn answers_and_exits_on_stdin_eof() {
    bounded(async {
        let mut agent = spawn(&[]).await;
        let pid = agent.pid();
        let mut conn = Conn::new(&mut agent);
        assert!(agent.take_stdio().is_none(), "stdio is taken once");
        let reply = conn.call("echo", json!({"hello": [1, 2]})).await;
        assert_eq!(reply, json!({"jsonrpc": "2.0", "id": 1, "result": {"hello": [1, 2]}}));
        assert_eq!(conn.call("pid", Value::Null).await["result"], json!(pid));
        assert_eq!(conn.call("initialize", json!({})).await["result"], json!({"name": "skep-test-agent"}));
        assert_eq!(conn.call("nope", Value::Null).await["error"]["code"], json!(-32601));
        let failed = conn.call("fail", json!({"code": 7, "message": "no"})).await;
        assert_eq!(failed["error"], json!({"code": 7, "message": "no"}));
        assert_eq!(conn.call("sleep", json!({"ms": 1})).await["result"], json!({"slept": 1}));
        assert_eq!(agent.try_exited(), None);

        drop(conn);
        let outcome = agent.stop(TEST_LIMIT).await;
        assert!(matches!(outcome, StopOutcome::ExitedOnEof(s) if s.success()), "{outcome:?}");
        assert_nothing_left(pid).await;
    })
    .await;
}

#[tokio::test]
async fn stop_escalates_to_sigterm() {
    bounded(async {
        let agent = spawn(&["--ignore-eof"]).await;
        let pid = agent.pid();
        let outcome = agent.stop(GRACE).await;
        assert!(matches!(outcome, StopOutcome::Terminated(s) if signal_of(s) == Some(libc::SIGTERM)), "{outcome:?}");
        assert_eq!(describe_exit(outcome.status()), "killed by SIGTERM");
        assert_nothing_left(pid).await;
    })
    .await;
}

#[tokio::test]
async fn stop_escalates_to_sigkill() {
    bounded(async {
        let agent = spawn(&["--ignore-eof", "--ignore-sigterm"]).await;
        let pid = agent.pid();
        let outcome = agent.stop(GRACE).await;
        assert!(matches!(outcome, StopOutcome::Killed(s) if signal_of(s) == Some(libc::SIGKILL)), "{outcome:?}");
        assert_nothing_left(pid).await;
    })
    .await;
}

#[tokio::test]
async fn dropping_the_agent_kills_its_group() {
    bounded(async {
        let mut agent = spawn(&["--ignore-eof", "--ignore-sigterm", "--grandchild"]).await;
        let pid = agent.pid();
        let grandchild = Conn::new(&mut agent).call("grandchild", Value::Null).await["result"].as_u64();
        let grandchild = u32::try_from(grandchild.expect("grandchild pid")).expect("pid fits u32");
        drop(agent);
        eventually("the agent is killed and reaped", CLEANUP_LIMIT, || is_reaped(pid)).await;
        eventually("the grandchild is killed", CLEANUP_LIMIT, || !is_live(grandchild)).await;
        assert_nothing_left(pid).await;
    })
    .await;
}

#[tokio::test]
async fn a_grandchild_holding_stdout_dies_with_the_agent() {
    bounded(async {
        let mut agent = spawn(&["--grandchild"]).await;
        let pid = agent.pid();
        let mut conn = Conn::new(&mut agent);
        let grandchild = conn.call("grandchild", Value::Null).await["result"].as_u64();
        let grandchild = u32::try_from(grandchild.expect("grandchild pid")).expect("pid fits u32");
        assert!(is_live(grandchild));
        conn.send("crash", json!({"code": 5})).await;

        // Dropped and re-created every few ms: exited() must be cancel-safe.
        let status = loop {
            tokio::select! {
                status = agent.exited() => break status,
                () = tokio::time::sleep(Duration::from_millis(5)) => {}
            }
        };
        assert_eq!(status.code(), Some(5));
        assert_eq!(agent.exited().await, status, "exited() can be awaited again");
        assert_eq!(agent.try_exited(), Some(status));
        // The grandchild held stdout open; the group sweep closes it.
        let eof = tokio::time::timeout(CLEANUP_LIMIT, conn.lines.next_line()).await;
        assert!(eof.expect("stdout reaches EOF once the group is swept").expect("read stdout").is_none());
        eventually("the grandchild is killed", CLEANUP_LIMIT, || !is_live(grandchild)).await;
        assert_eq!(agent.stop(GRACE).await, StopOutcome::AlreadyExited(status));
        assert_nothing_left(pid).await;
    })
    .await;
}

#[tokio::test]
async fn a_stderr_flood_neither_blocks_the_agent_nor_grows_the_ring() {
    bounded(async {
        let mut agent = spawn(&["--stderr-flood"]).await;
        let pid = agent.pid();
        let stderr = agent.stderr_handle();
        let mut conn = Conn::new(&mut agent);
        let far_past_a_pipe = 4 * STDERR_RING_CAPACITY as u64;
        eventually("stderr is drained past a pipe's worth", TEST_LIMIT, || stderr.total_bytes() > far_past_a_pipe)
            .await;
        for i in 0..200 {
            assert_eq!(conn.call("echo", json!(i)).await["result"], json!(i));
            assert!(stderr.buffered_len() <= STDERR_RING_CAPACITY);
        }
        let seen = stderr.total_bytes();
        eventually("the flood keeps flowing", TEST_LIMIT, || stderr.total_bytes() > seen + far_past_a_pipe).await;
        assert!(stderr.buffered_len() <= STDERR_RING_CAPACITY);

        let tail = agent.stderr_tail(4096);
        assert!(tail.len() <= 4096 && tail.len() > 3000, "{} bytes", tail.len());
        assert!(tail.starts_with("flood ") && tail.lines().all(|l| l.starts_with("flood ")), "{tail:?}");
        drop(conn);
        let outcome = agent.stop(TEST_LIMIT).await;
        assert!(matches!(outcome, StopOutcome::ExitedOnEof(s) if s.success()), "{outcome:?}");
        assert_nothing_left(pid).await;
    })
    .await;
}

#[tokio::test]
async fn a_crash_at_startup_leaves_its_stderr() {
    bounded(async {
        let mut agent = spawn(&["--crash-at-startup"]).await;
        let pid = agent.pid();
        let status = agent.exited().await;
        assert_eq!(describe_exit(status), "exit code 2");
        let stderr = agent.stderr_handle();
        eventually("the last words are in the ring", TEST_LIMIT, || stderr.tail(1024).contains("crashing at startup"))
            .await;
        assert_eq!(agent.stop(GRACE).await, StopOutcome::AlreadyExited(status));
        assert_nothing_left(pid).await;
    })
    .await;
}

#[tokio::test]
async fn crash_after_and_garbage_stdout_misbehave_as_asked() {
    bounded(async {
        let mut agent = spawn(&["--crash-after", "1", "--garbage-stdout"]).await;
        let pid = agent.pid();
        let mut conn = Conn::new(&mut agent);
        assert_eq!(conn.call("echo", json!("one")).await["result"], json!("one"));
        assert_eq!(conn.noise, ["log: hello from agent"]);
        conn.send("echo", json!("two")).await;
        assert_eq!(agent.exited().await.code(), Some(3));
        assert!(conn.lines.next_line().await.expect("read stdout").is_none(), "no answer to call 2");
        assert_nothing_left(pid).await;
    })
    .await;
}

#[tokio::test]
async fn the_environment_is_rebuilt_from_the_allow_list() {
    bounded(async {
        let (other, _) = std::env::vars().find(|(name, _)| name != "PATH").expect("some variable besides PATH");
        let mut spec = spec(&[]);
        spec.env_passthrough = vec!["PATH".into(), other.clone(), "SKEP_TEST_SURELY_UNSET_VARIABLE".into()];
        spec.env = BTreeMap::from([(other.clone(), "overridden".into()), ("SKEP_ROLE_VAR".into(), "reviewer".into())]);
        let dir = tempfile::tempdir().expect("temp dir");
        let cwd = dir.path().canonicalize().expect("temp dir");
        spec.cwd = Some(cwd.clone());
        let mut agent = ChildProcess::spawn(&spec).await.expect("spawn");
        let pid = agent.pid();
        let mut conn = Conn::new(&mut agent);

        let mut expected = serde_json::Map::new();
        expected.insert("PATH".into(), json!(std::env::var("PATH").expect("PATH is set")));
        expected.insert(other, json!("overridden"));
        expected.insert("SKEP_ROLE_VAR".into(), json!("reviewer"));
        assert_eq!(conn.call("env", Value::Null).await["result"], Value::Object(expected));
        assert_eq!(conn.call("cwd", Value::Null).await["result"], json!(cwd.to_string_lossy()));

        drop(conn);
        assert!(matches!(agent.stop(TEST_LIMIT).await, StopOutcome::ExitedOnEof(_)));
        assert_nothing_left(pid).await;
    })
    .await;
}

#[tokio::test]
async fn a_missing_program_is_a_spawn_error_naming_it() {
    let mut spec = spec(&[]);
    spec.command = vec!["/nonexistent/skep-agent".into(), "--secret-arg".into()];
    let error = ChildProcess::spawn(&spec).await.expect_err("cannot spawn");
    assert_eq!(error.to_string(), r#"cannot start "/nonexistent/skep-agent" for role tester"#);
    match error {
        SpawnError::Spawn { source, .. } => assert_eq!(source.kind(), io::ErrorKind::NotFound),
        other => panic!("{other:?}"),
    }

    spec.command.clear();
    let error = ChildProcess::spawn(&spec).await.expect_err("cannot spawn");
    assert!(matches!(error, SpawnError::EmptyCommand { ref role } if role == "tester"), "{error:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_outlives_the_thread_that_asked_for_it() {
    bounded(async {
        let runtime = tokio::runtime::Handle::current();
        let asker = std::thread::spawn(move || runtime.block_on(spawn(&[])));
        let mut agent = asker.join().expect("asking thread");
        let pid = agent.pid();
        // Had the fork happened on the asking thread, its exit would have
        // SIGKILLed the agent through PR_SET_PDEATHSIG.
        let mut conn = Conn::new(&mut agent);
        assert_eq!(conn.call("echo", json!("alive")).await["result"], json!("alive"));
        assert!(tokio::time::timeout(GRACE, agent.exited()).await.is_err(), "the agent died");

        drop(conn);
        assert!(matches!(agent.stop(TEST_LIMIT).await, StopOutcome::ExitedOnEof(_)));
        assert_nothing_left(pid).await;
    })
    .await;
}

/// Set in the copy of this test binary that plays the orchestrator to be killed.
const PROBE: &str = "SKEP_PROCESS_TEST_PROBE";
const PROBE_TEST: &str = "an_orchestrator_killed_with_sigkill_takes_its_agents_along";

/// Plays both parts. Run normally, it re-executes this test binary filtered to
/// this very test with [`PROBE`] set; that copy spawns an agent that neither
/// reads stdin nor minds SIGTERM, prints its pid, and waits to be SIGKILLed.
/// Only the parent-death signal can then end the agent.
#[test]
fn an_orchestrator_killed_with_sigkill_takes_its_agents_along() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    if std::env::var_os(PROBE).is_some() {
        runtime.block_on(async {
            let agent = spawn(&["--no-read", "--ignore-sigterm"]).await;
            let mut stdout = io::stdout();
            writeln!(stdout, "agent-pid {}", agent.pid()).and_then(|()| stdout.flush()).expect("report");
            std::future::pending::<()>().await;
        });
    } else {
        runtime.block_on(bounded(kill_an_orchestrator()));
    }
}

async fn kill_an_orchestrator() {
    let mut orchestrator = tokio::process::Command::new(std::env::current_exe().expect("test binary"))
        .args([PROBE_TEST, "--exact", "--nocapture", "--test-threads=1"])
        .env(PROBE, "1")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("re-execute the test binary");
    let stdout = orchestrator.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let agent = loop {
        let line = lines.next_line().await.expect("read the probe").expect("the probe reports its agent");
        // libtest's own "test ... " may precede it on the same line.
        if let Some((_, pid)) = line.split_once("agent-pid ") {
            break pid.trim().parse::<u32>().expect("a pid");
        }
    };
    assert!(is_live(agent));

    orchestrator.start_kill().expect("SIGKILL the orchestrator");
    let status = orchestrator.wait().await.expect("reap the orchestrator");
    assert_eq!(signal_of(status), Some(libc::SIGKILL));
    eventually("the agent dies with its orchestrator", Duration::from_secs(1), || !is_live(agent)).await;
    eventually("the agent's group is gone", CLEANUP_LIMIT, || !group_exists(agent)).await;
}

#[test]
fn the_test_agent_rejects_unknown_flags() {
    let help = std::process::Command::new(AGENT).arg("--help").output().expect("run --help");
    assert!(help.status.success());
    assert!(String::from_utf8_lossy(&help.stdout).starts_with("usage: skep-test-agent"));

    for bad in [&["--bogus"][..], &["--crash-after", "soon"]] {
        let out = std::process::Command::new(AGENT).args(bad).output().expect("run with a bad flag");
        assert_eq!(out.status.code(), Some(64), "{bad:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("skep-test-agent: "), "{bad:?}");
    }
}

/// The runner sets a spec's rlimits in the child before exec, for every kind
/// of child (here a run-to-completion one, as command roles and workflow
/// steps are), and they reach what the child starts.
#[tokio::test]
async fn rlimits_are_set_before_exec_and_inherited_by_grandchildren() {
    bounded(async {
        let mut spec = spec(&[]);
        // The shell reports its own limits, then a grandchild's.
        let script = "ulimit -n; ulimit -d; ulimit -t; sh -c 'ulimit -n'";
        spec.command = vec!["/bin/sh".into(), "-c".into(), script.into()];
        spec.rlimits = skep_swarm::Rlimits {
            nofile: Some(40),
            data: Some(512 << 20),
            cpu: Some(Duration::from_millis(2500)),
            nproc: None,
        };
        let done = skep_swarm::run_to_completion(&spec, Vec::new(), Some(TEST_LIMIT)).await.expect("ran");
        assert!(done.status.success(), "{:?}: {}", done.status, done.stderr.tail(1024));
        // `ulimit -d` counts KiB; CPU seconds round up.
        assert_eq!(String::from_utf8_lossy(&done.stdout), "40\n524288\n3\n40\n");
        assert!(skep_testkit::gone(done.pid));
    })
    .await;
}
