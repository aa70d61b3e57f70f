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
use super::spec::{Action, Step, Workflow};
use super::step_cache::{StepCache, hash_file};
use skep_swarm::{CallOptions, RunError, STDERR_RING_CAPACITY, SpawnSpec, Swarm, describe_exit, run_to_completion};

/// How a step's attempt ended.
pub(super) struct Ended {
    pub(super) result: Result<Value, String>,
    pub(super) cache_hit: bool,
    pub(super) attempts: u32,
    pub(super) bytes_in: u64,
    pub(super) bytes_out: u64,
    pub(super) at: Instant,
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
) -> (usize, Ended) {
    let step = &workflow.steps[i];
    let lookup = |id: &str| upstream.iter().find(|(u, _)| *u == id).map(|(_, v)| v.clone());
    let resolved = match &step.action {
        Action::Call { params, .. } => {
            params.as_ref().map(|p| resolve(p, &lookup)).transpose().map(|p| p.unwrap_or(Value::Null))
        }
        Action::Command { argv, .. } => resolve(&json!(argv), &lookup),
    };
    let failed = |message: String| Ended {
        result: Err(message),
        cache_hit: false,
        attempts: 0,
        bytes_in: 0,
        bytes_out: 0,
        at: Instant::now(),
    };
    let resolved = match resolved {
        Ok(r) => r,
        Err(message) => return (i, failed(message)),
    };
    let key = if step.cache {
        let (workdir, patterns) = (workflow.workdir.clone(), step.inputs.clone());
        let hashed = tokio::task::spawn_blocking(move || -> std::io::Result<Vec<(String, String)>> {
            expand_inputs(&workdir, &patterns)?
                .into_iter()
                .map(|f| Ok((hash_file(&workdir.join(&f))?, f)))
                .map(|r| r.map(|(h, f)| (f, h)))
                .collect()
        })
        .await
        .expect("hashing inputs does not panic");
        let hashed = match hashed {
            Ok(h) => h,
            Err(e) => return (i, failed(format!("cannot hash its inputs: {e}"))),
        };
        let up: Vec<(&str, &Value)> = upstream.iter().map(|(id, v)| (*id, v)).collect();
        Some(StepCache::key(&step.definition(), &resolved, &hashed, &up))
    } else {
        None
    };
    if use_cache
        && let Some(key) = &key
        && let Some(result) = cache.get(key, SystemTime::now())
    {
        let bytes_out = result.to_string().len() as u64;
        return (
            i,
            Ended { result: Ok(result), cache_hit: true, attempts: 0, bytes_in: 0, bytes_out, at: Instant::now() },
        );
    }
    let bytes_in = resolved.to_string().len() as u64;
    let mut attempts = 0;
    let result = loop {
        attempts += 1;
        let result = match &step.action {
            Action::Call { role, method, .. } => call_agent(swarm, role, method, &resolved, step.timeout).await,
            Action::Command { shell, .. } => run_command(step, &workflow.workdir, &resolved, *shell).await,
        };
        if result.is_ok() || attempts > step.retries {
            break result;
        }
    };
    let at = Instant::now();
    let bytes_out = result.as_ref().map_or(0, |v| v.to_string().len() as u64);
    if let (Ok(value), Some(key)) = (&result, &key)
        && let Err(e) = cache.put(key, &step.id, value, SystemTime::now())
    {
        tracing::warn!(step = %step.id, error = %e, "cannot store the step's result in the cache");
    }
    (i, Ended { result, cache_hit: false, attempts, bytes_in, bytes_out, at })
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
async fn run_command(step: &Step, workdir: &Path, argv: &Value, shell: bool) -> Result<Value, String> {
    let argv: Vec<String> = serde_json::from_value(argv.clone()).map_err(|e| format!("argv: {e}"))?;
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
            return Err(format!("timeout: {program:?} did not finish within {} ms", after.as_millis()));
        }
        Err(RunError::Spawn(e)) => return Err(e.with_reason()),
        Err(other) => return Err(other.to_string()),
    };
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = output.stderr.tail(STDERR_RING_CAPACITY);
    match output.status.code() {
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
    }
}
