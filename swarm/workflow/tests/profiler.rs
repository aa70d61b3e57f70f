//! The profiler against real processes: why each step ran (and `explain`
//! agreeing with the run that follows), CPU and memory from the kernel's own
//! accounting, agents' reported usage and the cost estimate.

#![allow(clippy::unwrap_used)] // helpers of tests: a failed unwrap is a failed test

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use skep_swarm::{Config, Cost, RoleConfig, Swarm};
use skep_testkit::{agent_role, wait_gone};
use skep_workflow::{Change, RunOptions, RunRecord, StepCacheLimits, StepRecord, Why, Workflow, explain, run_workflow};

/// A directory removed when the test ends (by the `tempfile` guard it holds).
struct TempDir(PathBuf, #[allow(dead_code)] tempfile::TempDir);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = tempfile::Builder::new().prefix(&format!("skep-prof-{name}-")).tempdir().expect("temp dir");
        TempDir(dir.path().to_path_buf(), dir)
    }
}

/// Runs `text` over `swarm` in `dir`, within a minute.
async fn run(swarm: &Swarm, config: &Config, dir: &Path, text: &str, options: RunOptions) -> RunRecord {
    let wf = Workflow::parse(text, "wf.toml", dir, config).unwrap_or_else(|e| panic!("{e}"));
    let run = run_workflow(swarm, &wf, options, |_| {});
    tokio::time::timeout(Duration::from_secs(60), run).await.expect("the run ends").unwrap()
}

fn step<'a>(record: &'a RunRecord, id: &str) -> &'a StepRecord {
    record.steps.iter().find(|s| s.id == id).unwrap()
}

fn why(record: &RunRecord, id: &str) -> Why {
    step(record, id).why.clone().unwrap_or_else(|| panic!("{id} has no decision"))
}

fn miss(change: Change) -> Why {
    Why::Miss { because: vec![change] }
}

/// Explains, runs, and checks the run did what the explanation said: a
/// predicted hit is a hit from the same run, a certain miss is a miss for the
/// same reasons; an uncertain one (an upstream runs) may go either way.
async fn explained_run(swarm: &Swarm, config: &Config, dir: &Path, text: &str, use_cache: bool) -> RunRecord {
    let wf = Workflow::parse(text, "wf.toml", dir, config).unwrap();
    let explained = explain(&wf, None, use_cache, StepCacheLimits::default());
    let record = run(swarm, config, dir, text, RunOptions { use_cache, ..RunOptions::default() }).await;
    assert_eq!(explained.len(), record.steps.len());
    for e in &explained {
        let actual = why(&record, &e.step);
        if e.why.is_hit() || e.runs() {
            assert_eq!(actual, e.why, "{}: explained {:?}, the run did {:?}", e.step, e.why, actual);
        } else {
            assert!(
                matches!(&e.why, Why::Miss { because } if matches!(&because[..], [Change::UpstreamRuns { .. }])),
                "{e:?}"
            );
        }
    }
    record
}

fn workflow(param: &str, down_word: &str) -> String {
    format!(
        r#"
[[steps]]
id = "src"
run = ["cat", "in.txt"]
inputs = ["in.txt"]
[[steps]]
id = "down"
needs = ["src"]
run = ["echo", "{down_word}", "${{steps.src.result.stdout}}"]
[[steps]]
id = "ask"
role = "echoer"
method = "echo"
params = {{ text = "{param}", fixed = 1 }}
[[steps]]
id = "side"
run = ["true"]
cache = false
"#
    )
}

#[tokio::test]
async fn every_reason_has_its_known_answer_and_explain_agrees_with_the_run() {
    let dir = TempDir::new("why");
    std::fs::write(dir.0.join("in.txt"), "one").unwrap();
    let roles = vec![agent_role("echoer", &[])];
    let config = skep_testkit::config(roles.clone());
    let swarm = skep_testkit::start(roles).await;
    let base = workflow("P", "down");

    let first = explained_run(&swarm, &config, &dir.0, &base, true).await;
    for id in ["src", "down", "ask"] {
        assert_eq!(why(&first, id), miss(Change::NeverRan), "{id}");
    }
    assert_eq!(why(&first, "side"), miss(Change::CacheOff));

    let second = explained_run(&swarm, &config, &dir.0, &base, true).await;
    for id in ["src", "down", "ask"] {
        assert_eq!(why(&second, id), Why::Hit { run: Some(first.id.clone()) }, "{id}");
    }
    assert_eq!(why(&second, "side"), miss(Change::CacheOff));

    // One input file changes: its step names it with both hashes; the step downstream names the upstream.
    std::fs::write(dir.0.join("in.txt"), "two").unwrap();
    let third = explained_run(&swarm, &config, &dir.0, &base, true).await;
    match why(&third, "src") {
        Why::Miss { because } => match &because[..] {
            [Change::Input { path, old: Some(old), new: Some(new) }] => {
                assert_eq!(path, "in.txt");
                assert_ne!(old, new);
                assert_eq!(new.len(), 64, "a SHA-256 in hex");
            }
            other => panic!("src: {other:?}"),
        },
        hit => panic!("src: {hit:?}"),
    }
    assert_eq!(why(&third, "down"), miss(Change::Upstream { step: "src".into() }));
    assert_eq!(why(&third, "ask"), Why::Hit { run: Some(first.id.clone()) });

    // One param of the agent call.
    let param = workflow("Q", "down");
    let fourth = explained_run(&swarm, &config, &dir.0, &param, true).await;
    assert_eq!(why(&fourth, "ask"), miss(Change::Param { at: "/text".into() }));
    assert!(why(&fourth, "src").is_hit() && why(&fourth, "down").is_hit());

    // The definition of a command.
    let definition = workflow("Q", "changed");
    let fifth = explained_run(&swarm, &config, &dir.0, &definition, true).await;
    assert_eq!(why(&fifth, "down"), miss(Change::Definition { what: "run".into() }));
    assert_eq!(step(&fifth, "down").why.as_ref().unwrap().describe(), "miss: definition changed (run)");

    // --no-cache, and cache = false still said as such.
    let sixth = explained_run(&swarm, &config, &dir.0, &definition, false).await;
    for id in ["src", "down", "ask"] {
        assert_eq!(why(&sixth, id), miss(Change::NoCache), "{id}");
    }
    assert_eq!(why(&sixth, "side"), miss(Change::CacheOff));

    let agents: Vec<u32> = swarm.agents().await.iter().map(|a| a.pid).collect();
    swarm.shutdown().await;
    wait_gone(&agents, "the echo agents").await;
}

#[tokio::test]
async fn explain_leaves_open_what_depends_on_an_upstream_that_runs() {
    let dir = TempDir::new("explain");
    std::fs::write(dir.0.join("in.txt"), "one\n").unwrap();
    let config = skep_testkit::config(vec![agent_role("echoer", &[])]);
    let text = r#"
[[steps]]
id = "src"
run = ["wc", "-l", "in.txt"]
inputs = ["in.txt"]
[[steps]]
id = "same"
needs = ["src"]
run = ["echo", "${steps.src.result.stdout}"]
"#;
    let swarm = Swarm::start(config.clone()).await.unwrap();
    run(&swarm, &config, &dir.0, text, RunOptions::default()).await;
    // New content, same line count: src surely runs, but its result comes
    // out the same, so `same` is a hit after all, which explain cannot know.
    std::fs::write(dir.0.join("in.txt"), "two\n").unwrap();
    let wf = Workflow::parse(text, "wf.toml", &dir.0, &config).unwrap();
    let explained = explain(&wf, None, true, StepCacheLimits::default());
    assert!(explained[0].runs());
    assert!(!explained[1].runs() && !explained[1].why.is_hit());
    assert_eq!(explained[1].why.describe(), "miss: upstream src runs (cached if its result comes out the same)");
    let record = run(&swarm, &config, &dir.0, text, RunOptions::default()).await;
    assert!(matches!(why(&record, "src"), Why::Miss { because } if matches!(because[..], [Change::Input { .. }])));
    assert!(why(&record, "same").is_hit(), "{:?}", why(&record, "same"));
    // And when the result does change, the miss names the upstream.
    std::fs::write(dir.0.join("in.txt"), "two\nthree\n").unwrap();
    let record = run(&swarm, &config, &dir.0, text, RunOptions::default()).await;
    assert_eq!(why(&record, "same"), miss(Change::Upstream { step: "src".into() }));
    swarm.shutdown().await;
}

#[tokio::test]
async fn a_command_reports_the_kernels_cpu_time_and_peak_memory() {
    let dir = TempDir::new("rusage");
    // ~100 MiB written (so resident), then ~200 ms of CPU by the process's own clock.
    let script =
        "import time\nb = b'x' * (100 << 20)\nt = time.process_time()\nwhile time.process_time() - t < 0.2: pass";
    let text = format!("[[steps]]\nid = \"burn\"\nrun = [\"python3\", \"-c\", {script:?}]\ncache = false\n");
    let config = skep_testkit::config(Vec::new());
    let swarm = Swarm::start(config.clone()).await.unwrap();
    let record = run(&swarm, &config, &dir.0, &text, RunOptions::default()).await;
    let burn = step(&record, "burn");
    assert!(record.ok, "{:?}", burn.error);
    let r = burn.resources.as_ref().expect("a command step has resources");
    assert_eq!((r.source.as_str(), r.approximate), ("rusage", false));
    // Loose bounds: at least the 200 ms the script spun (less a clock tick), far below a runaway.
    assert!((190.0..5000.0).contains(&r.cpu_ms()), "cpu {} ms", r.cpu_ms());
    let rss = r.peak_rss_bytes.unwrap();
    assert!(((100 << 20)..(400 << 20)).contains(&rss), "peak rss {rss} bytes");
    assert_eq!(record.analysis.totals.peak_rss_bytes, Some(rss));
    assert_eq!(record.analysis.totals.cpu_ms, r.cpu_ms());
    swarm.shutdown().await;
}

#[tokio::test]
async fn an_agent_call_reports_the_agents_cpu_across_the_call() {
    let dir = TempDir::new("proc");
    let mut shared = agent_role("shared", &[]);
    shared.concurrency = 2;
    let roles = vec![agent_role("spinner", &[]), shared];
    let config = skep_testkit::config(roles.clone());
    let swarm = skep_testkit::start(roles).await;
    let text = r#"
[[steps]]
id = "spin"
role = "spinner"
method = "spin"
params = { ms = 300 }
cache = false
[[steps]]
id = "spin-shared"
role = "shared"
method = "spin"
params = { ms = 50 }
cache = false
"#;
    let record = run(&swarm, &config, &dir.0, text, RunOptions::default()).await;
    assert!(record.ok);
    let spin = step(&record, "spin").resources.clone().expect("the agent's cpu was read");
    assert_eq!((spin.source.as_str(), spin.approximate, spin.peak_rss_bytes), ("proc", false, None));
    // The agent spun 300 ms of its own CPU. Loose: /proc counts in clock ticks (10 ms), and the
    // first reading is taken when the run learns of the hand-off, a moment after it.
    assert!((150.0..5000.0).contains(&spin.cpu_ms()), "cpu {} ms", spin.cpu_ms());
    let shared = step(&record, "spin-shared").resources.clone().expect("read");
    assert!(shared.approximate, "an agent with concurrency 2 may serve other calls meanwhile");
    assert!(record.analysis.totals.cpu_approximate);
    let agents: Vec<u32> = swarm.agents().await.iter().map(|a| a.pid).collect();
    swarm.shutdown().await;
    wait_gone(&agents, "the spinning agents").await;
}

fn priced(mut role: RoleConfig) -> RoleConfig {
    role.cost =
        Some(Cost { per_second: 0.0, per_call: 0.01, usage: BTreeMap::from([("inputTokens".to_owned(), 0.001)]) });
    role
}

#[tokio::test]
async fn reported_usage_and_cost_add_up_and_a_cached_run_knows_what_it_saved() {
    let dir = TempDir::new("cost");
    let roles = vec![priced(agent_role("echoer", &[]))];
    let config = skep_testkit::config(roles.clone());
    let swarm = skep_testkit::start(roles).await;
    // The echo agent answers its params: a result with `_meta.usage`, as a model agent would report tokens.
    let text = r#"
[[steps]]
id = "ask"
role = "echoer"
method = "echo"
params = { _meta = { usage = { inputTokens = 100, outputTokens = 7 } } }
[[steps]]
id = "build"
run = ["true"]
cost = { per_call = 0.5 }
"#;
    let first = run(&swarm, &config, &dir.0, text, RunOptions::default()).await;
    let ask = step(&first, "ask");
    assert_eq!(ask.usage, BTreeMap::from([("inputTokens".to_owned(), 100.0), ("outputTokens".to_owned(), 7.0)]));
    // 0.01 per call + 100 input tokens at 0.001; output tokens have no price.
    assert!((ask.cost.unwrap() - 0.11).abs() < 1e-9, "{:?}", ask.cost);
    assert!((step(&first, "build").cost.unwrap() - 0.5).abs() < 1e-9);
    let totals = &first.analysis.totals;
    assert!((totals.cost.unwrap() - 0.61).abs() < 1e-9);
    assert_eq!(totals.usage["outputTokens"], 7.0);
    assert!(first.analysis.insights.iter().any(|i| i == "estimated cost 0.6100"), "{:?}", first.analysis.insights);

    let second = run(&swarm, &config, &dir.0, text, RunOptions::default()).await;
    assert_eq!(second.analysis.cache_hit_rate, 1.0);
    assert_eq!(second.analysis.totals.cost, None, "nothing ran, nothing was spent");
    assert!((second.analysis.totals.saved_cost.unwrap() - 0.61).abs() < 1e-9);
    assert_eq!(
        second.analysis.insights,
        ["every step came from the cache: nothing it depends on changed; it saved an estimated 0.6100"]
    );
    let agents: Vec<u32> = swarm.agents().await.iter().map(|a| a.pid).collect();
    swarm.shutdown().await;
    wait_gone(&agents, "the echo agents").await;
}

#[test]
fn a_command_steps_cost_is_checked_at_load() {
    let config = skep_testkit::config(vec![agent_role("echoer", &[])]);
    let bad = "[[steps]]\nid = \"a\"\nrun = [\"true\"]\ncost = { per_call = -1.0 }\n";
    let err = Workflow::parse(bad, "wf.toml", Path::new("."), &config).unwrap_err().to_string();
    assert!(err.contains("step a: cost.per_call: expected a price of at least 0, found -1"), "{err}");
    let agent = "[[steps]]\nid = \"a\"\nrole = \"echoer\"\nmethod = \"echo\"\ncost = { per_call = 1.0 }\n";
    let err = Workflow::parse(agent, "wf.toml", Path::new("."), &config).unwrap_err().to_string();
    assert!(err.contains("priced by its role's [roles.echoer.cost]"), "{err}");
}
