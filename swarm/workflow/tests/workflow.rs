//! Workflows end to end through the library: loading errors with their
//! messages, runs of real commands (order, failures, stages, timeouts) and
//! smart skipping against a real on-disk cache.

#![allow(clippy::unwrap_used)] // helpers of tests: a failed unwrap is a failed test

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use skep_swarm::{Config, Swarm};
use skep_workflow::{Progress, RunOptions, RunRecord, StepOutcome, Workflow, WorkflowError, run_workflow};

/// A directory removed when the test ends (by the `tempfile` guard it holds).
struct TempDir(PathBuf, #[allow(dead_code)] tempfile::TempDir);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = tempfile::Builder::new().prefix(&format!("skep-wf-{name}-")).tempdir().expect("temp dir");
        TempDir(dir.path().to_path_buf(), dir)
    }
}

fn config() -> Config {
    let text = r#"
[roles.writer]
command = ["true"]
min_warm = 0
idempotent = ["summarize"]
"#;
    Config::parse(text, "skep.toml", Path::new(".")).unwrap()
}

fn no_roles() -> Config {
    Config { roles: BTreeMap::new(), ..Config::default() }
}

fn load_err(text: &str) -> String {
    match Workflow::parse(text, "wf.toml", Path::new("."), &config()) {
        Ok(_) => panic!("expected an error for:\n{text}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn an_unknown_need_names_the_step_and_line() {
    let err = load_err(
        "[[steps]]\nid = \"a\"\nrun = [\"true\"]\n\n[[steps]]\nid = \"b\"\nneeds = [\"nope\"]\nrun = [\"true\"]\n",
    );
    assert_eq!(err, "wf.toml:5:1: step b needs \"nope\", but there is no step \"nope\" (steps: a, b)");
}

#[test]
fn a_cycle_is_named_in_full() {
    let text = r#"
[[steps]]
id = "a"
needs = ["c"]
run = ["true"]
[[steps]]
id = "b"
needs = ["a"]
run = ["true"]
[[steps]]
id = "c"
needs = ["b"]
run = ["true"]
"#;
    let err = load_err(text);
    assert!(err.contains("needs form a cycle: "), "{err}");
    // Whichever step the cycle is reported from, it reads as a closed loop over all three.
    let cycle = err.split("cycle: ").nth(1).unwrap().split(';').next().unwrap();
    let names: Vec<&str> = cycle.split(" -> ").collect();
    assert_eq!(names.len(), 4, "{cycle}");
    assert_eq!(names[0], names[3]);
    for pair in [("a", "b"), ("b", "c"), ("c", "a")] {
        assert!(names.windows(2).any(|w| (w[0], w[1]) == pair), "{pair:?} missing from {cycle}");
    }
}

#[test]
fn a_need_against_stage_order_is_a_cycle_through_the_stage() {
    let text = "[[steps]]\nid = \"a\"\nstage = \"one\"\nneeds = [\"b\"]\nrun = [\"true\"]\n[[steps]]\nid = \"b\"\nstage = \"two\"\nrun = [\"true\"]\n";
    let err = load_err(text);
    assert!(err.contains("-(stage order)->"), "{err}");
}

#[test]
fn a_reference_to_a_step_not_upstream_says_to_add_the_need() {
    let text = r#"
[[steps]]
id = "lint"
run = ["true"]
[[steps]]
id = "summary"
role = "writer"
method = "summarize"
params = { lint = "${steps.lint.result.exitCode}" }
"#;
    assert_eq!(
        load_err(text),
        "wf.toml:5:1: step summary refers to the result of lint, which is not upstream of it: add \"lint\" to its needs"
    );
    let missing = text.replace("steps.lint.result", "steps.ghost.result");
    assert!(load_err(&missing).ends_with("step summary refers to the result of ghost, but there is no step ghost"));
}

#[test]
fn an_unknown_role_lists_the_known_ones() {
    let err = load_err("[[steps]]\nid = \"x\"\nrole = \"reviewer\"\nmethod = \"m\"\n");
    assert_eq!(
        err,
        "wf.toml:1:1: step x: unknown role \"reviewer\"; known roles: writer (declare it in skep.toml and pass --config)"
    );
}

#[test]
fn step_rules_each_have_their_message() {
    let cases = [
        ("id = \"a b\"\nrun = [\"true\"]", "step id \"a b\": expected 1 to 64 characters from [A-Za-z0-9._-]"),
        (
            "id = \"x\"\nrole = \"writer\"\nmethod = \"draft\"\nretries = 2",
            "step x: retries = 2 needs an idempotent method",
        ),
        ("id = \"x\"\nrun = [\"true\"]\nretries = 1", "step x: retries is only for idempotent agent calls"),
        ("id = \"x\"\nrole = \"writer\"\nmethod = \"m\"\nshell = true", "step x: shell applies to run commands"),
        ("id = \"x\"", "step x: has neither role (an agent call) nor run (a command)"),
        ("id = \"x\"\nrun = []", "step x: run must be a non-empty argv"),
        ("id = \"x\"\nrun = [\"true\"]\ntimeout = \"soon\"", "step x: timeout: expected a duration"),
        ("id = \"x\"\nrun = [\"echo\", \"${steps.x}\"]", "step x: bad reference ${steps.x}"),
        ("id = \"x\"\nrun = [\"true\"]\ncolour = 1", "unknown field `colour`"),
        (
            "id = \"x\"\nrun = [\"true\"]\ninputs = [\"src/[a.rs\"]",
            "step x: inputs: \"src/[a.rs\" is not a glob pattern (unclosed character class",
        ),
    ];
    for (body, expected) in cases {
        let err = load_err(&format!("[[steps]]\n{body}\n"));
        assert!(err.contains(expected), "{body:?}: {err}");
    }
    let dup = load_err("[[steps]]\nid = \"a\"\nrun = [\"true\"]\n[[steps]]\nid = \"a\"\nrun = [\"true\"]\n");
    assert_eq!(dup, "wf.toml:4:1: step a: the id is already used at line 1");
    assert!(load_err("name = \"empty\"\n").contains("no steps"));
}

#[test]
fn shape_errors_name_line_column_and_key_path_of_the_step() {
    let text = "[[steps]]\nid = \"a\"\nrun = [\"true\"]\n[[steps]]\nid = \"b\"\nrun = [\"true\"]\nretries = \"two\"\n";
    let err = Workflow::parse(text, "wf.toml", Path::new("."), &config()).expect_err("a string is not a count");
    let WorkflowError::File(skep_swarm::FileError::Invalid(invalid)) = &err else {
        panic!("expected an invalid-file error, got {err}")
    };
    assert_eq!((invalid.location.line, invalid.location.column), (7, 11));
    assert_eq!(invalid.location.key.as_deref(), Some("steps[1].retries"));
    assert!(err.to_string().starts_with("wf.toml:7:11: steps[1].retries: invalid type: string \"two\""), "{err}");
}

#[test]
fn step_timeouts_past_thirty_days_are_refused() {
    let err = load_err("[[steps]]\nid = \"x\"\nrun = [\"true\"]\ntimeout = \"18446744073709551.716s\"\n");
    assert_eq!(
        err,
        "wf.toml:1:1: step x: timeout: expected a duration of at most 30 days (\"720h\"), found \"18446744073709551.716s\""
    );
}

#[test]
fn retries_are_allowed_for_idempotent_methods() {
    let text = "[[steps]]\nid = \"s\"\nrole = \"writer\"\nmethod = \"summarize\"\nretries = 2\n";
    let wf = Workflow::parse(text, "wf.toml", Path::new("."), &config()).unwrap();
    assert_eq!(wf.steps[0].retries, 2);
}

/// Runs `text` (commands only) in `dir`, collecting its progress.
async fn run(dir: &Path, text: &str, options: RunOptions) -> (RunRecord, Vec<Progress>) {
    let wf = Workflow::parse(text, "wf.toml", dir, &no_roles()).unwrap_or_else(|e| panic!("{e}"));
    let swarm = Swarm::start(no_roles()).await.unwrap();
    let mut events = Vec::new();
    let run = run_workflow(&swarm, &wf, options, |p| events.push(p.clone()));
    let record = tokio::time::timeout(Duration::from_secs(60), run).await.expect("the run ends").unwrap();
    (record, events)
}

fn step<'a>(record: &'a RunRecord, id: &str) -> &'a skep_workflow::StepRecord {
    record.steps.iter().find(|s| s.id == id).unwrap()
}

/// Every step started at or after each step it waited for finished.
fn assert_order_respects_needs(record: &RunRecord) {
    for s in &record.steps {
        for dep in &s.after {
            let d = step(record, dep);
            assert!(s.started_ms.unwrap() >= d.finished_ms.unwrap(), "{} started before {dep} finished", s.id);
        }
    }
}

fn steps_toml(steps: &[(&str, &[&str])]) -> String {
    steps
        .iter()
        .map(|(id, needs)| {
            let needs: Vec<String> = needs.iter().map(|n| format!("{n:?}")).collect();
            format!("[[steps]]\nid = {id:?}\nneeds = [{}]\nrun = [\"true\"]\ncache = false\n", needs.join(", "))
        })
        .collect()
}

#[tokio::test]
async fn diamond_fan_and_chain_run_in_an_order_that_respects_needs() {
    let dir = TempDir::new("shapes");
    let fan_ids: Vec<String> = (0..12).map(|i| format!("leaf{i}")).collect();
    let mut fan: Vec<(&str, &[&str])> = vec![("root", &[])];
    let root: &[&str] = &["root"];
    fan.extend(fan_ids.iter().map(|id| (id.as_str(), root)));
    let chain_ids: Vec<String> = (0..8).map(|i| format!("c{i}")).collect();
    let chain_needs: Vec<[&str; 1]> = chain_ids.iter().map(|id| [id.as_str()]).collect();
    let mut chain: Vec<(&str, &[&str])> = vec![(chain_ids[0].as_str(), &[])];
    chain.extend((1..8).map(|i| (chain_ids[i].as_str(), &chain_needs[i - 1][..])));
    for (shape, text, jobs) in
        [("diamond", steps_toml(&diamond_pairs()), 4), ("fan", steps_toml(&fan), 3), ("chain", steps_toml(&chain), 4)]
    {
        let options = RunOptions { jobs, save: false, ..RunOptions::default() };
        let (record, events) = run(&dir.0, &text, options).await;
        assert!(record.ok, "{shape}: {record:?}");
        assert_order_respects_needs(&record);
        assert!(events.iter().all(|p| p.running.len() <= jobs), "{shape}: more than {jobs} steps ran at once");
        if shape == "chain" {
            assert_eq!(record.analysis.critical_path, chain_ids, "a chain is its own critical path");
        }
    }
}

fn diamond_pairs() -> Vec<(&'static str, &'static [&'static str])> {
    vec![("a", &[]), ("b", &["a"]), ("c", &["a"]), ("d", &["b", "c"])]
}

#[tokio::test]
async fn a_failure_skips_its_dependents_and_independent_branches_finish() {
    let dir = TempDir::new("fail");
    let text = r#"
[[steps]]
id = "build"
run = ["sh", "-c", "echo boom >&2; exit 3"]
[[steps]]
id = "test"
needs = ["build"]
run = ["true"]
[[steps]]
id = "ship"
needs = ["test"]
run = ["true"]
[[steps]]
id = "docs"
run = ["true"]
"#;
    let (record, events) = run(&dir.0, text, RunOptions::default()).await;
    assert!(!record.ok);
    assert_eq!(step(&record, "build").error.as_deref(), Some("sh exited with code 3: boom"));
    assert_eq!(step(&record, "test").outcome, StepOutcome::Skipped);
    assert_eq!(step(&record, "test").error.as_deref(), Some("skipped: it needs `build`, which failed"));
    assert_eq!(
        step(&record, "ship").error.as_deref(),
        Some("skipped: it needs `test`, which was skipped because `build` failed")
    );
    assert_eq!(step(&record, "docs").outcome, StepOutcome::Ok);
    assert_eq!(events.last().unwrap().done, 4);
    // The profile is written even for a failed run.
    let saved = dir.0.join(".skep/runs").join(format!("{}.json", record.id));
    assert!(saved.is_file(), "{} missing", saved.display());
    assert!(record.analysis.insights[0].starts_with("build failed: sh exited with code 3: boom; 2 step(s) skipped"));
}

#[tokio::test]
async fn a_failed_stage_stops_the_later_ones() {
    let dir = TempDir::new("stages");
    let text = r#"
[[steps]]
id = "compile"
stage = "build"
run = ["true"]
[[steps]]
id = "vet"
stage = "build"
run = ["false"]
[[steps]]
id = "unit"
stage = "test"
run = ["true"]
[[steps]]
id = "publish"
stage = "release"
run = ["true"]
"#;
    let (record, _) = run(&dir.0, text, RunOptions::default()).await;
    assert_eq!(step(&record, "compile").outcome, StepOutcome::Ok, "the failed stage's other steps finish");
    assert_eq!(step(&record, "vet").outcome, StepOutcome::Failed);
    assert_eq!(
        step(&record, "unit").error.as_deref(),
        Some("skipped: stage build did not complete (`vet` failed), so later stages stop")
    );
    assert_eq!(step(&record, "publish").outcome, StepOutcome::Skipped);
}

#[tokio::test]
async fn a_command_past_its_timeout_fails_and_its_group_is_killed() {
    let dir = TempDir::new("timeout");
    let pid_file = dir.0.join("pids");
    let argv = serde_json::to_string(&skep_testkit::tree_command(&pid_file)).unwrap();
    // Long enough for the shell to write its pids on a loaded machine.
    let text = format!("[[steps]]\nid = \"slow\"\nrun = {argv}\ntimeout = \"5s\"\n");
    let (record, _) = run(&dir.0, &text, RunOptions::default()).await;
    assert_eq!(step(&record, "slow").error.as_deref(), Some("timeout: \"/bin/sh\" did not finish within 5000 ms"));
    // The shell and its grandchild, which ignores SIGTERM.
    skep_testkit::wait_gone(&skep_testkit::pids_in(&pid_file), "a timed-out step's group").await;
}

#[tokio::test]
async fn a_command_gets_a_cleared_environment_plus_what_it_lists() {
    // Cargo sets these for every test it runs; neither is in the default list.
    for name in ["CARGO_MANIFEST_DIR", "CARGO_PKG_NAME"] {
        assert!(std::env::var_os(name).is_some(), "cargo sets {name} when it runs tests");
    }
    let dir = TempDir::new("env");
    let text = "[[steps]]\nid = \"env\"\nrun = [\"/bin/sh\", \"-c\", \"env > env.txt\"]\nenv = [\"CARGO_PKG_NAME\"]\n";
    let (record, _) = run(&dir.0, text, RunOptions::default()).await;
    assert_eq!(step(&record, "env").outcome, StepOutcome::Ok, "{:?}", step(&record, "env").error);
    let seen = std::fs::read_to_string(dir.0.join("env.txt")).unwrap();
    let names: Vec<&str> = seen.lines().filter_map(|l| l.split_once('=').map(|(k, _)| k)).collect();
    assert!(names.contains(&"PATH") && names.contains(&"CARGO_PKG_NAME"), "{names:?}");
    assert!(!names.contains(&"CARGO_MANIFEST_DIR"), "an unlisted variable leaked: {names:?}");
    let cargo: Vec<&&str> = names.iter().filter(|n| n.starts_with("CARGO")).collect();
    assert_eq!(cargo, [&"CARGO_PKG_NAME"], "only the listed variable of cargo's passes");
}

#[tokio::test]
async fn smart_skip_reruns_exactly_what_an_edited_input_reaches() {
    let dir = TempDir::new("skip");
    std::fs::write(dir.0.join("a.txt"), "alpha\n").unwrap();
    std::fs::write(dir.0.join("b.txt"), "beta\n").unwrap();
    let text = r#"
[[steps]]
id = "read-a"
run = ["cat", "a.txt"]
inputs = ["*.txt"]
[[steps]]
id = "read-b"
run = ["cat", "b.txt"]
inputs = ["b.txt"]
[[steps]]
id = "join"
needs = ["read-a", "read-b"]
run = ["echo", "${steps.read-a.result.stdout}", "${steps.read-b.result.stdout}"]
[[steps]]
id = "alone"
run = ["echo", "independent"]
"#;
    let ran =
        |r: &RunRecord| -> Vec<String> { r.steps.iter().filter(|s| !s.cache_hit).map(|s| s.id.clone()).collect() };
    let (first, _) = run(&dir.0, text, RunOptions::default()).await;
    assert_eq!(ran(&first), ["read-a", "read-b", "join", "alone"]);
    let (second, _) = run(&dir.0, text, RunOptions::default()).await;
    assert!(ran(&second).is_empty(), "a second run skips everything, ran {:?}", ran(&second));
    assert_eq!(second.analysis.cache_hit_rate, 1.0);
    assert_eq!(step(&second, "join").outcome, StepOutcome::Ok);
    std::fs::write(dir.0.join("a.txt"), "alpha, edited\n").unwrap();
    let (third, _) = run(&dir.0, text, RunOptions::default()).await;
    assert_eq!(ran(&third), ["read-a", "join"], "the edited input's step and its dependents");
    let joined = &third.steps.iter().find(|s| s.id == "join").unwrap();
    assert_eq!(joined.outcome, StepOutcome::Ok);
    let (fourth, _) = run(&dir.0, text, RunOptions { use_cache: false, ..RunOptions::default() }).await;
    assert_eq!(ran(&fourth).len(), 4, "--no-cache runs everything");
}

#[tokio::test]
async fn history_feeds_predictions_and_comparisons() {
    let dir = TempDir::new("history");
    let text = "[[steps]]\nid = \"a\"\nrun = [\"true\"]\ncache = false\n";
    let (first, _) = run(&dir.0, text, RunOptions::default()).await;
    assert_eq!(first.steps[0].predicted_ms, 1.0, "equal weights on a first run");
    assert_eq!(first.analysis.compared_with, None);
    let (second, _) = run(&dir.0, text, RunOptions::default()).await;
    // The prediction goes through history.jsonl, so compare as decimals do, not bit for bit.
    let (predicted, took) = (second.steps[0].predicted_ms, first.steps[0].duration_ms);
    assert!((predicted - took).abs() < 1e-9, "the average of one earlier run: predicted {predicted}, took {took}");
    assert_eq!(second.analysis.compared_with.as_deref(), Some("the median of up to 5 comparable earlier runs"));
    let history = skep_workflow::History::new(&dir.0.join(".skep"));
    history.pin("base", &first.id).unwrap();
    let (third, _) = run(&dir.0, text, RunOptions { baseline: Some("base".into()), ..RunOptions::default() }).await;
    assert_eq!(third.analysis.compared_with, Some(format!("run {} (baseline base)", first.id)));
    assert_eq!(history.lines().unwrap().len(), 3);
    let missing = RunOptions { baseline: Some("nope".into()), ..RunOptions::default() };
    let wf = Workflow::parse(text, "wf.toml", &dir.0, &no_roles()).unwrap();
    let swarm = Swarm::start(no_roles()).await.unwrap();
    let err = run_workflow(&swarm, &wf, missing, |_| {}).await.unwrap_err();
    assert!(matches!(err, WorkflowError::NoSuchRun { .. }), "{err}");
}
