//! Running one step of a workflow: resolving its params, answering from the
//! cache when it may, calling an agent or running a command (through the
//! process runner, killed with its group if the step is dropped), and
//! storing a success.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Value, json};

use super::inputs::expand_inputs;
use super::params::resolve;
use super::resources::Resources;
use super::spec::{Action, Step, Workflow};
use super::step_cache::{StepCache, hash_file, hash_value};
use super::why::{Change, KeyParts, Why, diff};
use skep_swarm::{CallOptions, RunError, STDERR_RING_CAPACITY, SpawnSpec, Swarm, describe_exit, run_to_completion};

/// How a step's attempt ended.
pub(super) struct Ended {
    pub(super) result: Result<Value, String>,
    pub(super) cache_hit: bool,
    pub(super) attempts: u32,
    pub(super) bytes_in: u64,
    pub(super) bytes_out: u64,
    pub(super) at: Instant,
    /// The cache decision (none if the step failed before it: bad params, unreadable inputs).
    pub(super) why: Option<Why>,
    /// A command's CPU and memory from its rusage.
    pub(super) resources: Option<Resources>,
}

/// The step's params (an agent call) or argv (a command) with references resolved.
pub(super) fn resolve_action(step: &Step, lookup: &dyn Fn(&str) -> Option<Value>) -> Result<Value, String> {
    match &step.action {
        Action::Call { params, .. } => {
            params.as_ref().map(|p| resolve(p, lookup)).transpose().map(|p| p.unwrap_or(Value::Null))
        }
        Action::Command { argv, .. } => resolve(&json!(argv), lookup),
    }
}

/// Each file the step's `inputs` match, with the SHA-256 of its contents (blocking I/O).
pub(super) fn hash_inputs(workdir: &Path, patterns: &[String]) -> std::io::Result<Vec<(String, String)>> {
    expand_inputs(workdir, patterns)?
        .into_iter()
        .map(|f| Ok((hash_file(&workdir.join(&f))?, f)))
        .map(|r| r.map(|(h, f)| (f, h)))
        .collect()
}

/// What goes into the step's cache key, and the key.
pub(super) fn key_parts(
    step: &Step,
    resolved: &Value,
    inputs: Vec<(String, String)>,
    upstream: &[(&str, Value)],
) -> KeyParts {
    let up: Vec<(&str, &Value)> = upstream.iter().map(|(id, v)| (*id, v)).collect();
    let definition = step.definition();
    let key = StepCache::key(&definition, resolved, &inputs, &up);
    let upstream = upstream.iter().map(|(id, v)| ((*id).to_owned(), hash_value(v))).collect();
    KeyParts { key, definition, inputs, upstream }
}

/// The cache decision: a hit (with its result), or a miss and what differed
/// from the step's latest entry.
pub(super) fn decide(
    cache: &StepCache,
    workflow: &str,
    step: &Step,
    parts: Option<&KeyParts>,
    use_cache: bool,
    now: SystemTime,
) -> (Why, Option<Value>) {
    let miss = |change: Change| (Why::Miss { because: vec![change] }, None);
    if !step.cache {
        return miss(Change::CacheOff);
    }
    if !use_cache {
        return miss(Change::NoCache);
    }
    let Some(parts) = parts else {
        // Only `explain` gets here: a reference it cannot resolve without running an upstream.
        return miss(Change::Definition { what: "params that need an upstream result".into() });
    };
    if let Some((result, run)) = cache.get_with_run(&parts.key, now) {
        return (Why::Hit { run }, Some(result));
    }
    let because = match cache.latest_parts(workflow, &step.id) {
        None => vec![Change::NeverRan],
        Some(last) if last.key == parts.key => vec![Change::Expired],
        Some(last) => {
            let changes = diff(&last, parts);
            if changes.is_empty() {
                vec![Change::Definition { what: "the cache key's format".into() }]
            } else {
                changes
            }
        }
    };
    (Why::Miss { because }, None)
}

/// Runs one step: resolves its params, answers from the cache if it may, or
/// runs it and stores a success.
pub(super) async fn run_step(
    swarm: &Swarm,
    workflow: &Workflow,
    i: usize,
    upstream: Vec<(&str, Value)>,
    cache: StepCache,
    use_cache: bool,
    run: &str,
) -> (usize, Ended) {
    let step = &workflow.steps[i];
    let lookup = |id: &str| upstream.iter().find(|(u, _)| *u == id).map(|(_, v)| v.clone());
    let resolved = resolve_action(step, &lookup);
    let failed = |message: String, why: Option<Why>| Ended {
        result: Err(message),
        cache_hit: false,
        attempts: 0,
        bytes_in: 0,
        bytes_out: 0,
        at: Instant::now(),
        why,
        resources: None,
    };
    let resolved = match resolved {
        Ok(r) => r,
        Err(message) => return (i, failed(message, None)),
    };
    let parts = if step.cache {
        let (workdir, patterns) = (workflow.workdir.clone(), step.inputs.clone());
        let hashed = tokio::task::spawn_blocking(move || hash_inputs(&workdir, &patterns))
            .await
            .expect("hashing inputs does not panic");
        match hashed {
            Ok(h) => Some(key_parts(step, &resolved, h, &upstream)),
            Err(e) => return (i, failed(format!("cannot hash its inputs: {e}"), None)),
        }
    } else {
        None
    };
    let (why, hit) = decide(&cache, &workflow.name, step, parts.as_ref(), use_cache, SystemTime::now());
    if let Some(result) = hit {
        let bytes_out = result.to_string().len() as u64;
        let at = Instant::now();
        let ended = Ended {
            result: Ok(result),
            cache_hit: true,
            attempts: 0,
            bytes_in: 0,
            bytes_out,
            at,
            why: Some(why),
            resources: None,
        };
        return (i, ended);
    }
    let bytes_in = resolved.to_string().len() as u64;
    let mut attempts = 0;
    let (result, resources) = loop {
        attempts += 1;
        let (result, resources) = match &step.action {
            Action::Call { role, method, .. } => (call_agent(swarm, role, method, &resolved, step.timeout).await, None),
            Action::Command { shell, .. } => run_command(step, &workflow.workdir, &resolved, *shell).await,
        };
        if result.is_ok() || attempts > step.retries {
            break (result, resources);
        }
    };
    let at = Instant::now();
    let bytes_out = result.as_ref().map_or(0, |v| v.to_string().len() as u64);
    if let (Ok(value), Some(parts)) = (&result, &parts) {
        let stored = cache
            .put(&parts.key, &step.id, run, value, SystemTime::now())
            .and_then(|()| cache.remember_parts(&workflow.name, &step.id, parts));
        if let Err(e) = stored {
            tracing::warn!(step = %step.id, error = %e, "cannot store the step's result in the cache");
        }
    }
    (i, Ended { result, cache_hit: false, attempts, bytes_in, bytes_out, at, why: Some(why), resources })
}

/// The numeric figures of a result's `_meta.usage` (an agent's own report, e.g. tokens).
pub(super) fn reported_usage(result: &Value) -> BTreeMap<String, f64> {
    let usage = result.get("_meta").and_then(|m| m.get("usage")).and_then(Value::as_object);
    usage.into_iter().flatten().filter_map(|(k, v)| Some((k.clone(), v.as_f64()?))).collect()
}

async fn call_agent(
    swarm: &Swarm,
    role: &str,
    method: &str,
    params: &Value,
    timeout: Option<Duration>,
) -> Result<Value, String> {
    let raw = match params {
        Value::Null => None,
        p => Some(serde_json::value::to_raw_value(p).map_err(|e| format!("params: {e}"))?),
    };
    let options = CallOptions { timeout, bypass_cache: false };
    let answer = swarm.call(role, method, raw.as_deref(), options).await.map_err(|e| e.to_string())?;
    serde_json::from_str(answer.get()).map_err(|e| format!("the agent's result is not JSON: {e}"))
}

/// Variables every command step gets from skep's environment (as roles do by default).
const STEP_PASSTHROUGH: [&str; 3] = ["PATH", "HOME", "LANG"];

/// Runs a command step through the process runner: its own process group,
/// a cleared environment, bounded output, the group killed at its timeout or
/// when the step is dropped (a cancelled run).
async fn run_command(
    step: &Step,
    workdir: &Path,
    argv: &Value,
    shell: bool,
) -> (Result<Value, String>, Option<Resources>) {
    let argv: Vec<String> = match serde_json::from_value(argv.clone()) {
        Ok(argv) => argv,
        Err(e) => return (Err(format!("argv: {e}")), None),
    };
    let argv = if shell { vec!["/bin/sh".to_owned(), "-c".to_owned(), argv.join(" ")] } else { argv };
    let mut env_passthrough: Vec<String> = STEP_PASSTHROUGH.map(String::from).to_vec();
    env_passthrough.extend(step.env.iter().cloned());
    let spec = SpawnSpec {
        role: format!("step {}", step.id),
        command: argv.clone(),
        cwd: Some(workdir.to_path_buf()),
        env: BTreeMap::new(),
        env_passthrough,
        rlimits: Default::default(),
    };
    let output = match run_to_completion(&spec, Vec::new(), step.timeout).await {
        Ok(output) => output,
        Err(RunError::Timeout { program, after, .. }) => {
            return (Err(format!("timeout: {program:?} did not finish within {} ms", after.as_millis())), None);
        }
        Err(RunError::Spawn(e)) => return (Err(e.with_reason()), None),
        Err(other) => return (Err(other.to_string()), None),
    };
    let resources = output.usage.map(Resources::from_usage);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = output.stderr.tail(STDERR_RING_CAPACITY);
    let result = match output.status.code() {
        Some(0) => {
            let mut result = json!({ "exitCode": 0, "stdout": stdout, "stderr": stderr });
            if output.stdout_truncated {
                result["stdoutTruncated"] = json!(true);
            }
            Ok(result)
        }
        code => {
            let last = stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("no stderr");
            let how = code.map_or_else(|| describe_exit(output.status), |c| format!("exited with code {c}"));
            Err(format!("{} {how}: {last}", argv[0]))
        }
    };
    (result, resources)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use skep_swarm::Config;

    use super::*;
    use crate::step_cache::StepCacheLimits;

    #[test]
    fn a_lost_entry_with_the_same_key_is_expired_not_changed() {
        let dir = tempfile::Builder::new().prefix("skep-decide-").tempdir().unwrap();
        let config = Config { roles: BTreeMap::new(), ..Config::default() };
        let wf = Workflow::parse("[[steps]]\nid = \"a\"\nrun = [\"true\"]\n", "wf.toml", dir.path(), &config).unwrap();
        let ttl = Duration::from_secs(60);
        let cache = StepCache::new(dir.path(), StepCacheLimits { ttl, max_bytes: 1 << 20 });
        let step = &wf.steps[0];
        let parts = key_parts(step, &json!(["true"]), Vec::new(), &[]);
        let t0 = SystemTime::now();
        let decided = |now| decide(&cache, &wf.name, step, Some(&parts), true, now).0;
        assert_eq!(decided(t0), Why::Miss { because: vec![Change::NeverRan] });
        cache.put(&parts.key, "a", "R1", &json!({"exitCode": 0}), t0).unwrap();
        cache.remember_parts(&wf.name, "a", &parts).unwrap();
        assert_eq!(decided(t0), Why::Hit { run: Some("R1".into()) });
        assert_eq!(decided(t0 + 2 * ttl), Why::Miss { because: vec![Change::Expired] });
    }
}
