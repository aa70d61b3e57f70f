//! `skep run` and `skep profile` end to end: the real binary, the example
//! workflow from the repository, and its HTML report rendered by headless
//! Chromium.

#![allow(clippy::unwrap_used)] // a failed unwrap in these helpers is a failed test

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

const SKEP: &str = env!("CARGO_BIN_EXE_skep");
const CHROMIUM: &str = "/usr/bin/chromium";
/// Generous: a debug build (or a browser) on a loaded 2-core machine.
const DEADLINE: Duration = Duration::from_secs(90);
const POLL: Duration = Duration::from_millis(10);

/// A child leading its own process group, killed with the group if the test fails first.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the group the child leads; no memory is involved.
        unsafe { libc::kill(-(self.0.id() as i32), libc::SIGKILL) };
        let _ = self.0.wait();
    }
}

struct Output {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

/// Runs `program args` in `dir` to completion within the deadline.
fn run_in(dir: &Path, program: &str, args: &[&str]) -> Output {
    let mut child = Command::new(program)
        .args(args)
        // These tests are of `skep run`'s own swarm; tests/daemon.rs covers runs on a daemon.
        .env("SKEP_NO_DAEMON", "1")
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
    let drain = |mut r: Box<dyn Read + Send>| {
        thread::spawn(move || {
            let mut s = String::new();
            let _ = r.read_to_string(&mut s);
            s
        })
    };
    let stdout = drain(Box::new(child.stdout.take().expect("piped")));
    let stderr = drain(Box::new(child.stderr.take().expect("piped")));
    let mut guard = Guard(child);
    let deadline = Instant::now() + DEADLINE;
    let status = loop {
        if let Some(status) = guard.0.try_wait().expect("try_wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "{program} {args:?} did not exit within {DEADLINE:?}");
        thread::sleep(POLL);
    };
    Output { status, stdout: stdout.join().expect("stdout"), stderr: stderr.join().expect("stderr") }
}

/// A directory removed when the test ends (by the `tempfile` guard it holds).
struct TempDir(PathBuf, #[allow(dead_code)] tempfile::TempDir);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = tempfile::Builder::new().prefix(&format!("skep-run-{name}-")).tempdir().expect("temp dir");
        TempDir(dir.path().to_path_buf(), dir)
    }
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("manager sits in the workspace").to_path_buf()
}

/// Counts `needle` in `haystack`.
fn count(haystack: &str, needle: &str) -> usize {
    haystack.matches(needle).count()
}

#[test]
fn the_example_runs_and_its_report_renders_one_bar_per_step() {
    let tmp = TempDir::new("example");
    let report = tmp.0.join("r.html");
    let trace = tmp.0.join("t.json");
    let root = repo_root();
    let out = run_in(
        &root,
        SKEP,
        &[
            "run",
            "examples/workflows/review.toml",
            "--no-cache",
            "--report",
            report.to_str().unwrap(),
            "--trace",
            trace.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "skep run failed: {}\n{}", out.stdout, out.stderr);
    let steps = count(&std::fs::read_to_string(root.join("examples/workflows/review.toml")).unwrap(), "[[steps]]");
    assert_eq!(steps, 7);
    assert!(out.stdout.contains("of review: succeeded"), "{}", out.stdout);
    assert!(out.stdout.contains("critical path"), "{}", out.stdout);
    // Not a terminal: one plain line per step start and end.
    assert_eq!(count(&out.stderr, " started  "), steps, "{}", out.stderr);
    assert_eq!(count(&out.stderr, " finished "), steps, "{}", out.stderr);

    let trace: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&trace).unwrap()).unwrap();
    let complete = trace["traceEvents"].as_array().unwrap().iter().filter(|e| e["ph"] == "X").count();
    assert_eq!(complete, steps, "one complete trace event per step");

    let html = std::fs::read_to_string(&report).unwrap();
    let without_namespace = html.replace("xmlns=\"http://www.w3.org/2000/svg\"", "");
    assert!(!without_namespace.contains("http"), "the report links to nothing");
    assert!(!html.contains("src=") && !html.contains("<link"), "the report loads nothing from elsewhere");
    assert!(Path::new(CHROMIUM).exists(), "{CHROMIUM} is missing: install Debian's chromium (.ci/run does)");
    let profile = tmp.0.join("chromium-profile");
    let url = format!("file://{}", report.display());
    let dom = run_in(
        &tmp.0,
        CHROMIUM,
        &[
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            &format!("--user-data-dir={}", profile.display()),
            "--dump-dom",
            &url,
        ],
    );
    assert!(dom.status.success(), "chromium failed: {}", dom.stderr);
    let dom = dom.stdout;
    // Set by the report's script after layout: it ran, and every bar got a box.
    assert!(dom.contains("data-rendered=\"true\""), "the report's script did not run:\n{dom}");
    assert!(dom.contains(&format!("data-bars=\"{steps}\"")), "not one bar per step");
    assert!(dom.contains(&format!("data-drawn=\"{steps}\"")), "a bar has no width");
    assert!(dom.contains(&format!("{steps} of {steps} steps drawn")));
    assert!(count(&dom, "class=\"bar ") + count(&dom, "class=\"bar\"") == steps);
    assert!(count(&dom, "critical") >= 2, "the critical path is highlighted");
}

#[test]
fn a_failing_run_exits_nonzero_and_profiles_can_be_compared_and_pinned() {
    let tmp = TempDir::new("fail");
    let wf = tmp.0.join("wf.toml");
    std::fs::write(
        &wf,
        r#"
name = "breaks"
[[steps]]
id = "hello"
role = "demo"
method = "echo"
params = { greeting = "hi" }
[[steps]]
id = "broken"
needs = ["hello"]
role = "demo"
method = "fail"
params = { message = "${steps.hello.result.greeting} went wrong" }
[[steps]]
id = "after"
needs = ["broken"]
run = ["true"]
"#,
    )
    .unwrap();
    let first = run_in(&tmp.0, SKEP, &["run", "wf.toml"]);
    assert_eq!(first.status.code(), Some(1), "{}\n{}", first.stdout, first.stderr);
    assert!(
        first.stderr.contains("FAILED   broken: the agent answered with error -32050: hi went wrong"),
        "{}",
        first.stderr
    );
    assert!(first.stderr.contains("skipped  after: skipped: it needs `broken`, which failed"), "{}", first.stderr);
    assert!(first.stdout.contains("of breaks: FAILED"), "{}", first.stdout);
    let second = run_in(&tmp.0, SKEP, &["run", "wf.toml"]);
    assert_eq!(second.status.code(), Some(1));

    let history = std::fs::read_to_string(tmp.0.join(".skep/history.jsonl")).unwrap();
    let ids: Vec<String> = history
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 2);
    let latest = run_in(&tmp.0, SKEP, &["profile"]);
    assert!(latest.status.success(), "{}", latest.stderr);
    assert!(latest.stdout.starts_with(&format!("run {} of breaks: FAILED", ids[1])), "{}", latest.stdout);
    let compare = run_in(&tmp.0, SKEP, &["profile", "--compare", &ids[0], &ids[1]]);
    assert!(compare.status.success(), "{}", compare.stderr);
    assert!(compare.stdout.lines().any(|l| l.starts_with("total (wall)")), "{}", compare.stdout);
    assert!(compare.stdout.lines().any(|l| l.starts_with("hello ")), "{}", compare.stdout);
    let pin = run_in(&tmp.0, SKEP, &["profile", &ids[0], "--baseline", "good"]);
    assert!(pin.stdout.starts_with(&format!("baseline good = run {}", ids[0])), "{}", pin.stdout);
    let missing = run_in(&tmp.0, SKEP, &["profile", "no-such-run"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(missing.stderr.contains("no run no-such-run in .skep"), "{}", missing.stderr);
}

#[test]
fn an_invalid_workflow_is_refused_before_anything_starts() {
    let tmp = TempDir::new("invalid");
    std::fs::write(tmp.0.join("wf.toml"), "[[steps]]\nid = \"a\"\nrole = \"reviewer\"\nmethod = \"m\"\n").unwrap();
    let out = run_in(&tmp.0, SKEP, &["run", "wf.toml"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        out.stderr.trim(),
        "skep: invalid workflow: wf.toml:1:1: step a: unknown role \"reviewer\"; known roles: demo (declare it in \
         skep.toml and pass --config)"
    );
    assert!(!tmp.0.join(".skep").exists(), "nothing was recorded");
}
