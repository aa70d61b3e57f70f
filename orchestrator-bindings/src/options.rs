//! The option objects JavaScript passes, and their checked conversion into
//! swarm types. Every argument is validated here, once, with a message that
//! names the argument.

use std::path::PathBuf;
use std::time::Duration;

use napi::bindgen_prelude::{Function, Object};
use napi_derive::napi;
use serde_json::Value;
use serde_json::value::RawValue;
use skep_workflow::RunOptions;

use crate::error::{Failure, invalid_arg};
use crate::progress::{Listener, listener};

/// Per-call options of `call`, `race` and `broadcast`.
#[napi(object)]
#[allow(missing_debug_implementations, reason = "a JavaScript handle has no Debug")]
pub struct CallOptions<'env> {
    /// Fail with `SKEP_TIMEOUT` if no answer came within this many
    /// milliseconds (default: the role's `timeout`).
    pub timeout_ms: Option<f64>,
    /// Skip the role's idempotent cache for this call.
    pub bypass_cache: Option<bool>,
    /// Aborting it rejects the call with `SKEP_CANCELLED` and cancels it on the wire to the agent.
    #[napi(ts_type = "AbortSignal")]
    pub signal: Option<Object<'env>>,
    /// Called with each progress the agent reports for the call (`$/progress`, docs/protocol.md).
    #[napi(ts_type = "(progress: CallProgress) => void")]
    pub on_progress: Option<Function<'env, Value, ()>>,
}

/// Options of `fanout`: those of a call, plus how many run at once.
#[napi(object)]
#[allow(missing_debug_implementations, reason = "a JavaScript handle has no Debug")]
pub struct FanoutOptions<'env> {
    /// At most this many calls at once (default: the role's capacity).
    pub max_parallel: Option<f64>,
    /// Per call: fail with `SKEP_TIMEOUT` after this many milliseconds.
    pub timeout_ms: Option<f64>,
    /// Aborting it rejects the whole fan-out and cancels every call still running.
    #[napi(ts_type = "AbortSignal")]
    pub signal: Option<Object<'env>>,
}

/// Options of `runWorkflow`.
#[napi(object)]
#[allow(missing_debug_implementations, reason = "JavaScript handles have no Debug")]
pub struct WorkflowOptions<'env> {
    /// At most this many steps at once (default 8).
    pub jobs: Option<f64>,
    /// Run every step, even those whose cached success still matches.
    pub no_cache: Option<bool>,
    /// Called with every progress event.
    #[napi(ts_type = "(progress: WorkflowProgress) => void")]
    pub on_progress: Option<Function<'env, Value, ()>>,
    /// Aborting it stops the run: running steps are cancelled, nothing new starts.
    #[napi(ts_type = "AbortSignal")]
    pub signal: Option<Object<'env>>,
}

/// `runWorkflow`'s options taken apart: the run's, the listener, the signal.
#[allow(missing_debug_implementations, reason = "JavaScript handles have no Debug")]
pub struct CheckedWorkflow<'env> {
    pub run: RunOptions,
    pub on_progress: Option<Function<'env, Value, ()>>,
    pub signal: Option<Object<'env>>,
}

impl<'env> TryFrom<Option<WorkflowOptions<'env>>> for CheckedWorkflow<'env> {
    type Error = Failure;

    fn try_from(options: Option<WorkflowOptions<'env>>) -> Result<Self, Failure> {
        let Some(options) = options else {
            return Ok(CheckedWorkflow { run: RunOptions::default(), on_progress: None, signal: None });
        };
        let mut run = RunOptions { use_cache: !options.no_cache.unwrap_or(false), ..RunOptions::default() };
        if let Some(jobs) = options.jobs {
            run.jobs = match whole(jobs, "jobs")? {
                0 => return Err(invalid_arg("jobs must be at least 1")),
                n => usize::try_from(n).map_err(|_| invalid_arg("jobs is too large"))?,
            };
        }
        Ok(CheckedWorkflow { run, on_progress: options.on_progress, signal: options.signal })
    }
}

/// One contender of `race`.
#[napi(object)]
#[derive(Debug)]
pub struct RaceCall {
    /// The role whose agent takes the call.
    pub role: String,
    /// The agent's method.
    pub method: String,
    /// The params: an object or an array.
    #[napi(ts_type = "unknown")]
    pub params: Option<Value>,
}

/// The swarm's call options, the signal to watch and the progress listener, taken apart.
#[allow(missing_debug_implementations, reason = "a JavaScript handle has no Debug")]
pub struct Checked<'env> {
    pub call: skep_swarm::CallOptions,
    pub signal: Option<Object<'env>>,
    pub progress: Option<Listener>,
}

impl<'env> TryFrom<Option<CallOptions<'env>>> for Checked<'env> {
    type Error = Failure;

    fn try_from(options: Option<CallOptions<'env>>) -> Result<Self, Failure> {
        let Some(options) = options else {
            return Ok(Checked { call: Default::default(), signal: None, progress: None });
        };
        let call = skep_swarm::CallOptions {
            timeout: timeout(options.timeout_ms)?,
            bypass_cache: options.bypass_cache.unwrap_or(false),
        };
        let progress = options.on_progress.map(listener).transpose()?;
        Ok(Checked { call, signal: options.signal, progress })
    }
}

/// `maxParallel` and the checked rest of a fan-out's options.
pub fn fanout_options(options: Option<FanoutOptions<'_>>) -> Result<(Option<usize>, Checked<'_>), Failure> {
    let Some(options) = options else {
        return Ok((None, Checked { call: Default::default(), signal: None, progress: None }));
    };
    let max_parallel = match options.max_parallel {
        None => None,
        Some(n) => Some(whole(n, "maxParallel").and_then(|n| match n {
            0 => Err(invalid_arg("maxParallel must be at least 1")),
            n => usize::try_from(n).map_err(|_| invalid_arg("maxParallel is too large")),
        })?),
    };
    let call = skep_swarm::CallOptions { timeout: timeout(options.timeout_ms)?, bypass_cache: false };
    Ok((max_parallel, Checked { call, signal: options.signal, progress: None }))
}

fn timeout(ms: Option<f64>) -> Result<Option<Duration>, Failure> {
    match ms {
        None => Ok(None),
        Some(ms) => match whole(ms, "timeoutMs")? {
            0 => Err(invalid_arg("timeoutMs must be at least 1")),
            ms => Ok(Some(Duration::from_millis(ms))),
        },
    }
}

/// `n` as a whole number of at most 2^53, or an error naming `what`.
fn whole(n: f64, what: &str) -> Result<u64, Failure> {
    const MAX_SAFE: f64 = 9_007_199_254_740_991.0;
    if n.is_finite() && n.fract() == 0.0 && (0.0..=MAX_SAFE).contains(&n) {
        Ok(n as u64)
    } else {
        Err(invalid_arg(format!("{what} must be a whole number, not {n}")))
    }
}

/// JSON-RPC params from a JavaScript value: an object or an array; `undefined`
/// and `null` mean none.
pub fn params(value: Option<Value>) -> Result<Option<Box<RawValue>>, Failure> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(value @ (Value::Object(_) | Value::Array(_))) => {
            let raw = serde_json::value::to_raw_value(&value).map_err(|e| invalid_arg(format!("params: {e}")))?;
            Ok(Some(raw))
        }
        Some(other) => Err(invalid_arg(format!(
            "params must be an object or an array (JSON-RPC 2.0), such as {{ text: 'hi' }} or [1, 2]; got {}",
            kind(&other)
        ))),
    }
}

/// One params value per fan-out call.
pub fn params_list(values: Vec<Value>) -> Result<Vec<Box<RawValue>>, Failure> {
    values
        .into_iter()
        .enumerate()
        .map(|(index, value)| match params(Some(value)) {
            Ok(Some(raw)) => Ok(raw),
            Ok(None) => Err(invalid_arg(format!("params[{index}] must be an object or an array, not null"))),
            Err(Failure::InvalidArg(message)) => Err(invalid_arg(format!("params[{index}]: {message}"))),
            Err(other) => Err(other),
        })
        .collect()
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_are_objects_arrays_or_nothing() {
        assert!(params(None).unwrap().is_none());
        assert!(params(Some(Value::Null)).unwrap().is_none());
        assert_eq!(params(Some(serde_json::json!({"a": [1]}))).unwrap().unwrap().get(), r#"{"a":[1]}"#);
        let Err(Failure::InvalidArg(message)) = params(Some(serde_json::json!("hi"))) else { panic!("accepted") };
        assert!(message.contains("got a string"), "{message}");
    }

    #[test]
    fn numbers_must_be_whole_and_in_range() {
        assert_eq!(timeout(Some(250.0)).unwrap(), Some(Duration::from_millis(250)));
        for bad in [0.0, -1.0, 1.5, f64::NAN, f64::INFINITY, 1e300] {
            assert!(timeout(Some(bad)).is_err(), "{bad} accepted");
        }
    }
}

/// Options of `Swarm.connect`.
#[napi(object)]
#[derive(Debug, Default)]
pub struct ConnectOptions {
    /// The skep.toml whose daemon to use (default: the nearest one from the
    /// current directory up, else the built-in demo's daemon).
    pub config: Option<String>,
    /// A daemon's control socket to connect to directly (nothing is started).
    pub socket: Option<String>,
    /// Start the daemon if none runs (default true).
    pub auto_start: Option<bool>,
    /// The `skep` executable that starts it (default: `skep` on PATH).
    pub skep: Option<String>,
}

/// Where `Swarm.connect` goes: a socket, or a config's daemon (found like the CLI finds it).
pub fn connect_target(options: Option<ConnectOptions>) -> Result<crate::remote::Target, Failure> {
    let options = options.unwrap_or_default();
    let config = match (&options.config, &options.socket) {
        (_, Some(_)) => None,
        (Some(path), None) => Some(PathBuf::from(path)),
        (None, None) => std::env::current_dir().ok().and_then(|dir| skep_service::daemon::discover_config(&dir)),
    };
    let config = config
        .map(|path| path.canonicalize().map_err(|e| invalid_arg(format!("config {}: {e}", path.display()))))
        .transpose()?;
    let start_with = match (options.auto_start.unwrap_or(true), &options.skep) {
        (false, _) => None,
        (true, Some(skep)) => Some(PathBuf::from(skep)),
        (true, None) => Some(
            which::which("skep")
                .map_err(|e| invalid_arg(format!("autoStart needs the skep executable: {e}; pass options.skep")))?,
        ),
    };
    Ok(crate::remote::Target { config, socket: options.socket.map(PathBuf::from), start_with })
}
