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
    // The built-in demo role, priced, so that the report has a cost to show.
    let config = tmp.0.join("skep.toml");
    std::fs::write(
        &config,
        format!("[roles.demo]\ncommand = [{SKEP:?}, \"agent\", \"demo\"]\n[roles.demo.cost]\nper_call = 0.002\n"),
    )
    .unwrap();
    let out = run_in(
        &root,
        SKEP,
        &[
            "run",
            "examples/workflows/review.toml",
            "--config",
            config.to_str().unwrap(),
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
    // Each step's line says why it ran.
    assert_eq!(count(&out.stderr, "(miss: --no-cache)"), steps, "{}", out.stderr);
    assert!(out.stdout.contains("cost 0.0"), "the run's cost is in the summary: {}", out.stdout);

    let trace: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&trace).unwrap()).unwrap();
    let trace_events = trace["traceEvents"].as_array().unwrap().clone();
    let complete = trace_events.iter().filter(|e| e["ph"] == "X").count();
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
    // The reasons, in the steps table as the browser built it.
    assert_eq!(count(&dom, "<td class=\"why\">miss: --no-cache</td>"), steps, "one reason per step");
    // The resource lane: a CPU bar per step that has a figure (commands from rusage, agents from
    // /proc) and a memory bar per command, as many as the run recorded; every one drawn with a box.
    let figures = |key: &str| trace_events.iter().filter(|e| e["ph"] == "X" && !e["args"][key].is_null()).count();
    let (cpu_bars, memory_bars) = (figures("cpuMs"), figures("peakRssBytes"));
    assert_eq!(memory_bars, 2, "the two commands' peak memory");
    assert!(cpu_bars >= 2, "at least the commands' CPU");
    let bars = cpu_bars + memory_bars;
    assert!(dom.contains(&format!("data-res-bars=\"{bars}\"")), "resource bars: {}", attr(&dom, "data-res-bars"));
    assert!(dom.contains(&format!("data-res-drawn=\"{bars}\"")), "a resource bar has no box");
    // And the cost: 5 agent calls at 0.002.
    assert!(dom.contains("id=\"cost\">estimated cost<b>0.0100</b>"), "cost card: {}", attr(&dom, "id=\"cost\""));
}

/// The text after `needle` in `haystack`, for failure messages.
fn attr(haystack: &str, needle: &str) -> String {
    haystack.split(needle).nth(1).map(|t| t.chars().take(60).collect()).unwrap_or_else(|| "missing".into())
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

#[test]
fn the_regression_gate_exits_3_from_a_real_run_and_from_profile() {
    let tmp = TempDir::new("gate");
    let wf = "[[steps]]\nid = \"work\"\nrun = [\"sh\", \"-c\", \"sleep $(cat delay)\"]\ncache = false\n";
    std::fs::write(tmp.0.join("wf.toml"), wf).unwrap();
    let delay = |secs: &str| std::fs::write(tmp.0.join("delay"), secs).unwrap();
    delay("0.5");
    let slow = run_in(&tmp.0, SKEP, &["run", "wf.toml"]);
    assert_eq!(slow.status.code(), Some(0), "{}", slow.stderr);
    // Faster than before: the gate passes.
    delay("0");
    let fast = run_in(&tmp.0, SKEP, &["run", "wf.toml", "--max-regression", "10%"]);
    assert_eq!(fast.status.code(), Some(0), "{}\n{}", fast.stdout, fast.stderr);
    assert!(fast.stdout.contains("gate: nothing regressed past 10%"), "{}", fast.stdout);
    // Twice the slowest run so far: far past the median of the earlier two, by both margins.
    delay("1");
    let slower = run_in(&tmp.0, SKEP, &["run", "wf.toml", "--max-regression", "10%"]);
    assert_eq!(slower.status.code(), Some(3), "{}\n{}", slower.stdout, slower.stderr);
    assert!(slower.stdout.contains("gate: 2 regression(s) past 10%:"), "{}", slower.stdout);
    assert!(slower.stdout.contains("  - work regressed: "), "{}", slower.stdout);
    assert!(slower.stdout.contains("  - the whole run regressed: "), "{}", slower.stdout);

    let ids: Vec<String> = std::fs::read_to_string(tmp.0.join(".skep/history.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["id"].as_str().unwrap().to_owned())
        .collect();
    let pin = run_in(&tmp.0, SKEP, &["profile", &ids[0], "--baseline", "slow"]);
    assert!(pin.status.success(), "{}", pin.stderr);
    // The latest run (1 s) against the pinned 0.5 s run: regressed.
    let latest = run_in(&tmp.0, SKEP, &["profile", "--max-regression", "10%", "--baseline", "slow"]);
    assert_eq!(latest.status.code(), Some(3), "{}\n{}", latest.stdout, latest.stderr);
    assert!(latest.stdout.contains("work regressed: ") && latest.stdout.contains("over 1 run (+"), "{}", latest.stdout);
    // Nor is it past a floor of 10 s.
    let floor = ["profile", "--max-regression", "10%", "--baseline", "slow", "--regression-min-ms", "10000"];
    let floored = run_in(&tmp.0, SKEP, &floor);
    assert_eq!(floored.status.code(), Some(0), "{}\n{}", floored.stdout, floored.stderr);
    // The fast run against the same baseline: not.
    let quick = run_in(&tmp.0, SKEP, &["profile", &ids[1], "--max-regression", "10%", "--baseline", "slow"]);
    assert_eq!(quick.status.code(), Some(0), "{}\n{}", quick.stdout, quick.stderr);
    let baselines = std::fs::read_to_string(tmp.0.join(".skep/baselines.json")).unwrap();
    assert!(baselines.contains(&ids[0]) && !baselines.contains(&ids[2]), "gating pins nothing: {baselines}");
    // The status is documented where a CI author looks.
    let help = run_in(&tmp.0, SKEP, &["run", "--help"]);
    assert!(help.stdout.contains("3 regressed past --max-regression"), "{}", help.stdout);
}

#[test]
fn cached_runs_are_no_yardstick_and_explain_says_what_would_run() {
    let tmp = TempDir::new("wolf");
    std::fs::write(tmp.0.join("in.txt"), "one").unwrap();
    let wf = r#"
[[steps]]
id = "sources"
run = ["cat", "in.txt"]
inputs = ["in.txt"]
[[steps]]
id = "tests"
needs = ["sources"]
role = "demo"
method = "sleep"
params = { ms = 300 }
"#;
    std::fs::write(tmp.0.join("wf.toml"), wf).unwrap();
    let first = run_in(&tmp.0, SKEP, &["run", "wf.toml"]);
    assert!(first.status.success(), "{}", first.stderr);
    assert!(first.stderr.contains("finished sources (miss: never ran)"), "{}", first.stderr);
    // Fully cached: it says so, and nothing else (no step to speed up).
    let cached = run_in(&tmp.0, SKEP, &["run", "wf.toml"]);
    let insights: Vec<&str> =
        cached.stdout.lines().skip_while(|l| *l != "insights:").skip(1).take_while(|l| l.starts_with("  - ")).collect();
    assert_eq!(insights, ["  - every step came from the cache: nothing it depends on changed"], "{}", cached.stdout);
    assert!(cached.stderr.contains("cached   tests (hit from run "), "{}", cached.stderr);
    // All executed again, without the cache: no earlier run had the cache off, so nothing "regressed".
    let uncached = run_in(&tmp.0, SKEP, &["run", "wf.toml", "--no-cache"]);
    assert!(uncached.status.success());
    assert!(!uncached.stdout.contains("regressed"), "{}", uncached.stdout);

    std::fs::write(tmp.0.join("in.txt"), "two").unwrap();
    let explained = run_in(&tmp.0, SKEP, &["run", "wf.toml", "--explain"]);
    assert!(explained.status.success(), "{}", explained.stderr);
    let lines: Vec<&str> = explained.stdout.lines().collect();
    assert_eq!(lines[0], "explain: what `skep run` would do now (nothing was run)");
    assert!(lines[1].starts_with("run     sources  miss: input in.txt changed ("), "{}", explained.stdout);
    assert_eq!(lines[2], "run?    tests    miss: upstream sources runs (cached if its result comes out the same)");
    assert_eq!(lines[3], "0 from the cache, 1 to run, 1 depending on an upstream's result");
    let runs = std::fs::read_to_string(tmp.0.join(".skep/history.jsonl")).unwrap().lines().count();
    assert_eq!(runs, 3, "--explain records no run");
    let real = run_in(&tmp.0, SKEP, &["run", "wf.toml"]);
    assert!(real.stderr.contains("finished sources (miss: input in.txt changed ("), "{}", real.stderr);
    assert!(real.stderr.contains("finished tests (miss: the result of upstream sources changed)"), "{}", real.stderr);
}
