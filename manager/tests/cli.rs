//! The `skep` binary end to end: real processes, real pipes, every wait
//! bounded by a deadline.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const SKEP: &str = env!("CARGO_BIN_EXE_skep");
/// Generous: a debug build on a loaded 2-core machine.
const DEADLINE: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(10);

/// A child that is killed if the test fails before it exits.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Guard {
    fn wait_until_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.0.try_wait().expect("try_wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "skep did not exit within {DEADLINE:?}");
            thread::sleep(POLL);
        }
    }
}

struct Output {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

/// Runs `skep args`, with stdin closed, to completion within the deadline.
fn skep(args: &[&str]) -> Output {
    let mut child = Command::new(SKEP)
        .env("SKEP_NO_DAEMON", "1")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn skep");
    let stdout = drain(child.stdout.take().expect("piped"));
    let stderr = drain(child.stderr.take().expect("piped"));
    let status = Guard(child).wait_until_exit();
    Output { status, stdout: stdout.join().expect("stdout"), stderr: stderr.join().expect("stderr") }
}

fn drain(mut from: impl Read + Send + 'static) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut text = String::new();
        from.read_to_string(&mut text).expect("read output");
        text
    })
}

#[derive(Clone, Copy, Debug)]
enum Framing {
    Newline,
    Headers,
}

#[derive(Clone, Copy, Debug)]
enum Ending {
    /// The `shutdown` method, then stdin closed.
    ShutdownMethod,
    /// Only stdin closed.
    Eof,
    /// SIGTERM while stdin is still open.
    Sigterm,
}

/// A `skep serve` child spoken to in one framing.
struct Sidecar {
    child: Guard,
    stdin: Option<ChildStdin>,
    replies: Receiver<String>,
    framing: Framing,
}

impl Sidecar {
    fn start(framing: Framing) -> Sidecar {
        let mut child = Command::new(SKEP)
            .env("SKEP_NO_DAEMON", "1")
            .arg("serve")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn skep serve");
        let stdin = child.stdin.take();
        let mut stdout = BufReader::new(child.stdout.take().expect("piped"));
        let (tx, replies) = channel();
        thread::spawn(move || {
            while let Some(frame) = read_frame(&mut stdout, framing) {
                if tx.send(frame).is_err() {
                    break;
                }
            }
        });
        Sidecar { child: Guard(child), stdin, replies, framing }
    }

    fn send(&mut self, message: &Value) {
        let body = message.to_string();
        let frame = match self.framing {
            Framing::Newline => format!("{body}\n"),
            Framing::Headers => format!("Content-Length: {}\r\n\r\n{body}", body.len()),
        };
        let stdin = self.stdin.as_mut().expect("stdin still open");
        stdin.write_all(frame.as_bytes()).and_then(|()| stdin.flush()).expect("write to skep serve");
    }

    fn reply(&self) -> String {
        self.replies.recv_timeout(DEADLINE).expect("a reply within the deadline")
    }

    /// Sends a request and returns its reply, raw.
    fn call(&mut self, id: u64, method: &str, params: Value) -> String {
        self.send(&json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params }));
        self.reply()
    }
}

/// One frame of output in the given framing, or `None` at end of output.
fn read_frame(reader: &mut impl BufRead, framing: Framing) -> Option<String> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    match framing {
        Framing::Newline => Some(line.trim_end().to_owned()),
        Framing::Headers => {
            let length: usize = line.trim_end().strip_prefix("Content-Length: ")?.parse().ok()?;
            loop {
                line.clear();
                reader.read_line(&mut line).ok()?;
                if line.trim_end().is_empty() {
                    break;
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).ok()?;
            String::from_utf8(body).ok()
        }
    }
}

fn gone(pid: u32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    let alive = unsafe { libc::kill(pid as libc::pid_t, 0) } == 0;
    !alive && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
}

fn sidecar_session(framing: Framing, ending: Ending) {
    let mut sidecar = Sidecar::start(framing);
    let init: Value = serde_json::from_str(&sidecar.call(1, "initialize", json!({}))).expect("JSON");
    assert_eq!(init["result"]["name"], "skep");
    assert_eq!(init["result"]["roles"], json!(["demo"]));
    assert!(init["result"]["version"].is_string(), "{init}");

    let echo = sidecar.call(2, "swarm/call", json!({ "role": "demo", "method": "echo", "params": { "a": 1 } }));
    assert_eq!(echo, r#"{"jsonrpc":"2.0","id":2,"result":{"a":1}}"#);

    let unknown: Value =
        serde_json::from_str(&sidecar.call(3, "swarm/call", json!({ "role": "nope", "method": "echo" })))
            .expect("JSON");
    assert_eq!(unknown["id"], 3);
    assert_eq!(unknown["error"]["code"], -32602);
    assert_eq!(unknown["error"]["data"]["knownRoles"], json!(["demo"]));
    assert!(unknown["error"]["message"].as_str().expect("message").contains("nope"), "{unknown}");

    let agents: Value = serde_json::from_str(&sidecar.call(4, "swarm/agents", json!([]))).expect("JSON");
    let pids: Vec<u32> = agents["result"]
        .as_array()
        .expect("an array of agents")
        .iter()
        .map(|agent| agent["pid"].as_u64().expect("pid") as u32)
        .collect();
    assert!(!pids.is_empty() && pids.iter().all(|&pid| pid > 0 && !gone(pid)), "{agents}");

    match ending {
        Ending::ShutdownMethod => {
            assert_eq!(sidecar.call(5, "shutdown", json!([])), r#"{"jsonrpc":"2.0","id":5,"result":null}"#);
            sidecar.stdin = None;
        }
        Ending::Eof => sidecar.stdin = None,
        // SAFETY: signalling our own child, which has not been reaped yet.
        Ending::Sigterm => assert_eq!(unsafe { libc::kill(sidecar.child.0.id() as libc::pid_t, libc::SIGTERM) }, 0),
    }
    let status = sidecar.child.wait_until_exit();
    assert!(status.success(), "{framing:?}, {ending:?}: {status}");
    // The sidecar reaps its agents before it exits, so they are gone already;
    // the deadline only absorbs a slow machine.
    let deadline = Instant::now() + DEADLINE;
    while !pids.iter().all(|&pid| gone(pid)) {
        assert!(Instant::now() < deadline, "agents {pids:?} outlived skep serve");
        thread::sleep(POLL);
    }
}

#[test]
fn serve_answers_newline_framing_and_stops_on_the_shutdown_method() {
    sidecar_session(Framing::Newline, Ending::ShutdownMethod);
}

#[test]
fn serve_answers_content_length_framing_and_stops_on_the_shutdown_method() {
    sidecar_session(Framing::Headers, Ending::ShutdownMethod);
}

#[test]
fn serve_stops_its_agents_on_stdin_eof() {
    sidecar_session(Framing::Newline, Ending::Eof);
}

#[test]
fn serve_stops_its_agents_on_sigterm() {
    sidecar_session(Framing::Headers, Ending::Sigterm);
}

#[test]
fn serve_with_stdin_closed_at_once_exits_0() {
    let out = skep(&["serve"]);
    assert!(out.status.success(), "{}: {}", out.status, out.stderr);
    assert_eq!(out.stdout, "");
}

#[test]
fn serve_names_the_file_and_line_of_a_bad_config() {
    let config = tempfile::Builder::new().prefix("skep-cli-test-").suffix(".toml").tempfile().expect("temp config");
    let path = config.path();
    std::fs::write(path, "[roles.x]\ncommand = [\"true\"]\ntimeout = 5\n").expect("write config");
    let out = skep(&["serve", "--config", path.to_str().expect("UTF-8 path")]);
    assert!(!out.status.success());
    assert!(out.stderr.contains(&format!("{}:3:", path.display())), "{}", out.stderr);
    assert!(out.stderr.contains("timeout"), "{}", out.stderr);
}

/// A role whose program is not on its PATH is named at start-up (issue 19
/// item 8), before any call fails; a role whose program is found is not.
#[test]
fn serve_warns_about_a_program_not_on_the_path() {
    let config = tempfile::Builder::new().prefix("skep-cli-test-").suffix(".toml").tempfile().expect("temp config");
    let path = config.path();
    let text = "[roles.ghost]\ncommand = [\"skep-no-such-program\"]\nmin_warm = 0\n\n\
                [roles.found]\ncommand = [\"cat\"]\nmin_warm = 0\n";
    std::fs::write(path, text).expect("write config");
    let out = skep(&["serve", "--config", path.to_str().expect("UTF-8 path")]);
    assert!(out.status.success(), "{}: {}", out.status, out.stderr);
    let warnings: Vec<&str> = out.stderr.lines().filter(|l| l.contains("is not on the PATH")).collect();
    assert_eq!(warnings.len(), 1, "{}", out.stderr);
    assert!(warnings[0].contains("\"skep-no-such-program\"") && warnings[0].contains("role ghost"), "{}", warnings[0]);
    assert!(warnings[0].contains("[roles.ghost.env]"), "it says what to do: {}", warnings[0]);
}

#[test]
fn call_prints_the_result_compactly() {
    let out = skep(&["call", "demo", "echo", "{\"a\": 1}"]);
    assert!(out.status.success(), "{}: {}", out.status, out.stderr);
    assert_eq!(out.stdout, "{\"a\":1}\n");
}

#[test]
fn call_reports_an_error_reply_and_exits_1() {
    let out = skep(&["call", "demo", "fail", r#"{"message":"boom"}"#]);
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert_eq!(out.stdout, "");
    assert!(out.stderr.contains("boom"), "{}", out.stderr);
}

#[test]
fn call_to_an_unknown_role_names_the_known_ones() {
    let out = skep(&["call", "nosuchrole", "m"]);
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert!(out.stderr.contains("error -32602"), "{}", out.stderr);
    assert!(out.stderr.contains("knownRoles") && out.stderr.contains("\"demo\""), "{}", out.stderr);
}

#[test]
fn call_with_params_that_are_not_json_is_a_usage_error() {
    let out = skep(&["call", "demo", "echo", "{a:1}"]);
    assert_eq!(out.status.code(), Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("not valid JSON"), "{}", out.stderr);
    let out = skep(&["call", "demo", "echo", "42"]);
    assert_eq!(out.status.code(), Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("object or an array"), "{}", out.stderr);
}

#[test]
fn demo_prints_both_rows_of_its_table() {
    let out = skep(&["demo", "--calls", "2000", "--cold-calls", "10"]);
    assert!(out.status.success(), "{}: {}", out.status, out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 5, "{}", out.stdout);
    assert_eq!(lines[0], "skep demo: 8 warm agents vs a fresh process per call");
    assert_eq!(lines[1], "path   calls    calls/s     p50       p99");
    assert!(lines[2].starts_with("warm   2000 "), "{}", lines[2]);
    assert!(lines[3].starts_with("cold   10 "), "{}", lines[3]);
    assert!(lines[4].starts_with("warm is "), "{}", lines[4]);
    // Not a terminal: progress comes as a line per quarter.
    assert!(out.stderr.contains("warm: 2000/2000 (100%)"), "{}", out.stderr);
}

#[test]
fn help_shows_examples() {
    let out = skep(&["--help"]);
    assert!(out.status.success());
    assert!(out.stdout.contains("Examples:") && out.stdout.contains("skep demo"), "{}", out.stdout);
    let out = skep(&["call", "--help"]);
    assert!(out.status.success());
    assert!(out.stdout.contains("skep call demo echo"), "{}", out.stdout);
    let commands = skep(&["--help"]).stdout;
    assert!(!commands.lines().any(|line| line.trim_start().starts_with("agent ")), "agent mode is hidden: {commands}");
}
