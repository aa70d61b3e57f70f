//! The sidecar's methods, defined once on a jsonrpsee `RpcModule`:
//! `initialize`, `swarm/call`, `swarm/fanout`, `swarm/race`, `swarm/broadcast`,
//! `swarm/route`, `swarm/roles`, `swarm/agents`, `swarm/stats`,
//! `events/subscribe` / `events/unsubscribe`, `workflow/run` / `workflow/cancel`, and `shutdown`. Documented in
//! docs/protocol.md.

use std::time::Duration;

use serde::Deserialize;
use serde_json::json;
use serde_json::value::RawValue;
use skep_bridge::{Caller, ErrorObjectOwned, RpcModule, SubscriptionResult};
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use skep_swarm::{CallOptions, Event, PROGRESS_METHOD, Progress, RaceCall, Swarm, with_progress};
use skep_workflow::{History, RegressionRule, RunOptions, Workflow, run_workflow};

/// What the sidecar's methods share: the swarm and the sidecar's shutdown switch.
#[derive(Debug)]
pub struct Sidecar {
    swarm: Swarm,
    shutdown: CancellationToken,
}

/// The role that picks a role by `text` and the roles' `route` patterns.
const AUTO_ROLE: &str = "auto";

/// `swarm/call` params.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CallParams {
    role: String,
    method: String,
    #[serde(default)]
    params: Option<Box<RawValue>>,
    timeout_ms: Option<u64>,
    #[serde(default)]
    cache: CacheMode,
    /// With `"role": "auto"`: the text routed to a role.
    text: Option<String>,
}

/// `"cache": "use"` (the default) or `"bypass"`.
#[derive(Deserialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
enum CacheMode {
    #[default]
    Use,
    Bypass,
}

/// `swarm/fanout` params.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FanoutParams {
    role: String,
    method: String,
    params: Vec<Box<RawValue>>,
    max_parallel: Option<usize>,
    timeout_ms: Option<u64>,
}

/// One contender of `swarm/race`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RaceEntry {
    role: String,
    method: String,
    #[serde(default)]
    params: Option<Box<RawValue>>,
}

/// `swarm/race` params.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RaceParams {
    calls: Vec<RaceEntry>,
    timeout_ms: Option<u64>,
}

/// `swarm/broadcast` params.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct BroadcastParams {
    role: String,
    method: String,
    #[serde(default)]
    params: Option<Box<RawValue>>,
    timeout_ms: Option<u64>,
}

/// `swarm/route` params.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteParams {
    text: String,
}

/// `workflow/run` params: a file, or TOML text (with `baseDir` for its relative paths).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct WorkflowParams {
    file: Option<String>,
    toml: Option<String>,
    base_dir: Option<String>,
    jobs: Option<usize>,
    #[serde(default)]
    no_cache: bool,
    /// Compare against this pinned baseline instead of the previous run.
    baseline: Option<String>,
    /// How regressions are judged (docs/workflows.md); every field optional.
    regression: Option<RegressionParams>,
}

/// `workflow/run`'s `regression`: the judgement's window and margins.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RegressionParams {
    window: Option<usize>,
    ratio: Option<f64>,
    min_ms: Option<f64>,
}

impl RegressionParams {
    fn rule(self) -> RegressionRule {
        let d = RegressionRule::default();
        RegressionRule {
            window: self.window.unwrap_or(d.window).max(1),
            ratio: self.ratio.unwrap_or(d.ratio),
            min_ms: self.min_ms.unwrap_or(d.min_ms),
        }
    }
}

/// The cause a run records when its client went away mid-run.
const CLIENT_LEFT: &str = "client disconnected";

/// A caller who writes 0 for a count or a deadline means something, but no
/// meaning of 0 is useful (no time at all, no calls at all): refuse it by
/// name rather than ignore it.
fn at_least_one<T: PartialEq + From<u8>>(field: &str, value: Option<T>) -> Result<Option<T>, String> {
    match value {
        Some(zero) if zero == T::from(0) => Err(format!("{field} must be at least 1; leave it out for the default")),
        value => Ok(value),
    }
}

fn options(timeout_ms: Option<u64>, cache: CacheMode) -> Result<CallOptions, ErrorObjectOwned> {
    let timeout = at_least_one("timeoutMs", timeout_ms).map_err(|m| invalid_params(&m))?.map(Duration::from_millis);
    Ok(CallOptions { timeout, bypass_cache: cache == CacheMode::Bypass })
}

/// Sends `$/progress {id, fraction?, message?}` for the caller's request;
/// dropped when the caller is not reading (progress is advisory).
fn relay_progress(caller: &Caller, progress: &Progress) {
    #[derive(serde::Serialize)]
    struct Relayed<'a> {
        id: &'a RawValue,
        #[serde(flatten)]
        progress: &'a Progress,
    }
    let params = serde_json::value::to_raw_value(&Relayed { id: caller.id(), progress }).expect("progress serializes");
    caller.notify(PROGRESS_METHOD, &params);
}

/// The sidecar's method table over `swarm`; the `shutdown` method cancels `shutdown`.
pub fn rpc_module(swarm: Swarm, shutdown: CancellationToken) -> RpcModule<Sidecar> {
    let mut module = RpcModule::new(Sidecar { swarm, shutdown });
    module
        .register_method("initialize", |_, ctx, _| {
            let roles: Vec<String> = ctx.swarm.roles().into_iter().map(|r| r.name).collect();
            json!({ "name": "skep", "version": env!("CARGO_PKG_VERSION"), "roles": roles })
        })
        .expect("fresh name");
    module
        .register_async_method("swarm/call", |params, ctx, _| async move {
            let call: CallParams = params.parse()?;
            let swarm = &ctx.swarm;
            let role = match (call.role.as_str(), &call.text) {
                (AUTO_ROLE, Some(text)) => swarm.route(text).map_err(|e| e.to_error_object())?,
                (AUTO_ROLE, None) => return Err(invalid_params("\"role\": \"auto\" needs \"text\" to route")),
                (_, _) => call.role,
            };
            let options = options(call.timeout_ms, call.cache)?;
            let answer = swarm.call(&role, &call.method, call.params.as_deref(), options);
            // The agent's `$/progress` goes on to whoever made this call, naming its id.
            let answer = match Caller::current() {
                Some(caller) => with_progress(move |p| relay_progress(&caller, &p), answer).await,
                None => answer.await,
            };
            answer.map_err(|e| e.to_error_object())
        })
        .expect("fresh name");
    module
        .register_async_method("swarm/fanout", |params, ctx, _| async move {
            let fan: FanoutParams = params.parse()?;
            let options = options(fan.timeout_ms, CacheMode::Use)?;
            let max_parallel = at_least_one("maxParallel", fan.max_parallel).map_err(|m| invalid_params(&m))?;
            ctx.swarm
                .fanout(&fan.role, &fan.method, fan.params, max_parallel, options)
                .await
                .map_err(|e| e.to_error_object())
        })
        .expect("fresh name");
    module
        .register_async_method("swarm/race", |params, ctx, _| async move {
            let race: RaceParams = params.parse()?;
            let calls =
                race.calls.into_iter().map(|c| RaceCall { role: c.role, method: c.method, params: c.params }).collect();
            ctx.swarm.race(calls, options(race.timeout_ms, CacheMode::Use)?).await.map_err(|e| e.to_error_object())
        })
        .expect("fresh name");
    module
        .register_async_method("swarm/broadcast", |params, ctx, _| async move {
            let b: BroadcastParams = params.parse()?;
            let options = options(b.timeout_ms, CacheMode::Use)?;
            ctx.swarm.broadcast(&b.role, &b.method, b.params.as_deref(), options).await.map_err(|e| e.to_error_object())
        })
        .expect("fresh name");
    module
        .register_method("swarm/route", |params, ctx, _| {
            let RouteParams { text } = params.parse()?;
            let role = ctx.swarm.route(&text).map_err(|e| e.to_error_object())?;
            Ok::<_, ErrorObjectOwned>(json!({ "role": role }))
        })
        .expect("fresh name");
    module
        .register_method("shutdown", |_, ctx, _| {
            ctx.shutdown.cancel();
        })
        .expect("fresh name");
    module
        .register_subscription(
            "workflow/run",
            "workflow/progress",
            "workflow/cancel",
            |params, pending, ctx, _| async move {
                let loaded = params.parse::<WorkflowParams>().map_err(|e| e.to_string()).and_then(|p| {
                    at_least_one("jobs", p.jobs)?;
                    let config = ctx.swarm.config();
                    let workflow = match (&p.file, &p.toml) {
                        (Some(file), None) => Workflow::load(std::path::Path::new(file), &config),
                        (None, Some(text)) => {
                            let base = std::path::PathBuf::from(p.base_dir.as_deref().unwrap_or("."));
                            Workflow::parse(text, "<inline>", &base, &config)
                        }
                        _ => return Err("give exactly one of \"file\" and \"toml\"".to_owned()),
                    };
                    workflow.map(|w| (w, p)).map_err(|e| format!("{e:#}"))
                });
                let (workflow, p) = match loaded {
                    Ok(loaded) => loaded,
                    Err(message) => {
                        pending.reject(invalid_params(&message)).await;
                        return SubscriptionResult::Ok(());
                    }
                };
                let sink = pending.accept().await?;
                let defaults = RunOptions::default();
                let (cancel, cancelled) = tokio::sync::watch::channel(None);
                let options = RunOptions {
                    jobs: p.jobs.unwrap_or(defaults.jobs),
                    use_cache: !p.no_cache,
                    baseline: p.baseline,
                    regression: p.regression.map_or_else(RegressionRule::default, RegressionParams::rule),
                    cancel: Some(cancelled),
                    ..defaults
                };
                let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
                let run = run_workflow(&ctx.swarm, &workflow, options, move |progress| {
                    let _ = tx.send(serde_json::to_value(progress).expect("progress serializes"));
                });
                tokio::pin!(run);
                // Progress goes out as it comes. A client that leaves cancels
                // the run: its steps stop, and the run is still recorded, as cancelled.
                let mut left = false;
                let record = loop {
                    tokio::select! {
                        record = &mut run => break record,
                        Some(progress) = rx.recv() => if !left {
                            left = sink.send(serde_json::value::to_raw_value(&progress)?).await.is_err();
                        },
                        () = sink.closed(), if !left => left = true,
                    }
                    if left {
                        let _ = cancel.send(Some(CLIENT_LEFT.to_owned()));
                    }
                };
                if left {
                    return SubscriptionResult::Ok(());
                }
                while let Ok(progress) = rx.try_recv() {
                    sink.send(serde_json::value::to_raw_value(&progress)?).await?;
                }
                let last = match record {
                    Ok(record) => {
                        let state_dir = workflow.state_dir();
                        let profile = History::new(&state_dir).record_path(&record.id);
                        json!({ "event": "result", "record": record, "profile": profile, "stateDir": state_dir })
                    }
                    Err(e) => json!({ "event": "error", "message": format!("{e:#}") }),
                };
                sink.send(serde_json::value::to_raw_value(&last)?).await?;
                SubscriptionResult::Ok(())
            },
        )
        .expect("fresh name");
    register_views(&mut module);
    module
}

/// What every method table over a swarm holds; the views below need only the swarm.
pub(crate) trait HasSwarm: Send + Sync + 'static {
    fn swarm(&self) -> &Swarm;
}

impl HasSwarm for Sidecar {
    fn swarm(&self) -> &Swarm {
        &self.swarm
    }
}

/// `events/subscribe` params: only events about this role, or this agent (`role/N`).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct EventFilter {
    role: Option<String>,
    agent: Option<String>,
}

impl EventFilter {
    /// No params, `[]` or `null`: every event (what subscribers sent before
    /// filters existed); an object: a filter.
    fn from_params(params: Result<serde_json::Value, ErrorObjectOwned>) -> Result<EventFilter, ErrorObjectOwned> {
        match params? {
            serde_json::Value::Null => Ok(EventFilter::default()),
            serde_json::Value::Array(a) if a.is_empty() => Ok(EventFilter::default()),
            other => serde_json::from_value(other).map_err(|e| invalid_params(&format!("events/subscribe: {e}"))),
        }
    }

    fn matches(&self, event: &Event) -> bool {
        let role_ok = self.role.as_deref().is_none_or(|r| r == event.role());
        // Role-wide events (restarts, breaker, failure) concern every agent of the role.
        let agent_ok = self.agent.as_deref().is_none_or(|a| match event.agent() {
            Some(agent) => agent == a,
            None => a.rsplit_once('/').is_some_and(|(role, _)| role == event.role()),
        });
        role_ok && agent_ok
    }
}

/// The read-only methods: `swarm/roles`, `swarm/agents`, `swarm/stats` and
/// `events/subscribe` / `events/unsubscribe`, shared by the sidecar and the
/// observe socket.
pub(crate) fn register_views<T: HasSwarm>(module: &mut RpcModule<T>) {
    module.register_method("swarm/roles", |_, ctx, _| ctx.swarm().roles()).expect("fresh name");
    module
        .register_async_method("swarm/agents", |_, ctx, _| async move { ctx.swarm().agents().await })
        .expect("fresh name");
    module
        .register_async_method("swarm/stats", |_, ctx, _| async move {
            Ok::<_, ErrorObjectOwned>(ctx.swarm().stats().await)
        })
        .expect("fresh name");
    module
        .register_subscription(
            "events/subscribe",
            "events/event",
            "events/unsubscribe",
            |params, pending, ctx, _| async move {
                let filter = match EventFilter::from_params(params.parse()) {
                    Ok(filter) => filter,
                    Err(e) => {
                        pending.reject(e).await;
                        return SubscriptionResult::Ok(());
                    }
                };
                let mut events = ctx.swarm().subscribe();
                let sink = pending.accept().await?;
                loop {
                    tokio::select! {
                        event = events.recv() => match event {
                            Ok(event) if !filter.matches(&event) => {}
                            Ok(event) => sink.send(serde_json::value::to_raw_value(&event)?).await?,
                            Err(RecvError::Lagged(missed)) => {
                                let notice = json!({ "type": "lagged", "missed": missed });
                                sink.send(serde_json::value::to_raw_value(&notice)?).await?;
                            }
                            Err(RecvError::Closed) => break,
                        },
                        () = sink.closed() => break,
                    }
                }
                SubscriptionResult::Ok(())
            },
        )
        .expect("fresh name");
}

fn invalid_params(message: &str) -> ErrorObjectOwned {
    ErrorObjectOwned::owned(skep_bridge::code::INVALID_PARAMS, format!("invalid params: {message}"), None::<()>)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_agent_filter_keeps_its_agent_and_its_role_wide_events() {
        let filter = EventFilter { role: None, agent: Some("a/1".into()) };
        let busy = |agent: &str| Event::AgentBusy { role: "a".into(), agent: agent.into() };
        let restarting = |role: &str| Event::AgentRestarting { role: role.into(), delay_ms: 5 };
        assert!(filter.matches(&busy("a/1")));
        assert!(!filter.matches(&busy("a/10")));
        assert!(filter.matches(&restarting("a")));
        assert!(!filter.matches(&restarting("ab")));
        let by_role = EventFilter { role: Some("a".into()), agent: None };
        assert!(by_role.matches(&busy("a/10")) && !by_role.matches(&restarting("b")));
        assert!(EventFilter::default().matches(&restarting("b")));
        for everything in [json!(null), json!([])] {
            assert!(EventFilter::from_params(Ok(everything)).unwrap().matches(&restarting("b")));
        }
        let one = EventFilter::from_params(Ok(json!({"agent": "a/1"}))).unwrap();
        assert!(one.matches(&busy("a/1")) && !one.matches(&busy("a/2")));
        let err = EventFilter::from_params(Ok(json!({"agnet": "a/1"}))).err().unwrap();
        assert!(err.message().contains("agnet"), "{err:?}");
    }
}
