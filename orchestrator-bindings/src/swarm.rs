//! The exported class `Swarm`: one method per swarm function, nothing more.
//! A `Swarm` runs its agents in this process, or (`Swarm.connect`) is a
//! connection to a daemon's swarm, with the same methods (`remote.rs`).

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use napi::bindgen_prelude::{Env, Function, PromiseRaw, Unknown};
use napi_derive::napi;
use serde_json::{Value, json};
use skep_service::{Observation, ObserveOptions, observe};
use skep_swarm::Config;
use skep_workflow::{Workflow, run_workflow};

use crate::demo;
use crate::error::Failure;
use crate::json::{self, Answer};
use crate::options::{
    self, CallOptions, Checked, CheckedWorkflow, ConnectOptions, FanoutOptions, RaceCall, WorkflowOptions,
};
use crate::promise::{Prepared, json, settle, settle_here};
use crate::remote::{Remote, call_fields};
use crate::{events, progress};

/// A running swarm of warm agent processes, one pool per role.
///
/// Start one with `Swarm.fromFile`, `Swarm.fromToml` or `Swarm.demo`; end it
/// with `close()`. Agents never outlive the Node process.
#[napi]
#[derive(Debug)]
pub struct Swarm {
    inner: Backend,
    /// Observe sockets being served; closed with the swarm.
    observations: Arc<Mutex<Vec<Observation>>>,
}

/// Where the swarm runs.
#[derive(Debug, Clone)]
enum Backend {
    /// In this process.
    Local(skep_swarm::Swarm),
    /// In a daemon, over its control socket.
    Remote(Arc<Remote>),
}

#[napi]
impl Swarm {
    /// Starts the roles of a `skep.toml` file and resolves once each has its
    /// `min_warm` agents ready (or has failed).
    #[napi(ts_return_type = "Promise<Swarm>")]
    pub fn from_file<'env>(env: &'env Env, path: String) -> napi::Result<PromiseRaw<'env, Swarm>> {
        let config = Config::load(path.as_ref()).map_err(|e| Failure::Config(e.to_string()));
        settle(env, Ok((None, start(config))))
    }

    /// Starts the roles of a `skep.toml` text; relative paths in it are
    /// relative to the current directory.
    #[napi(ts_return_type = "Promise<Swarm>")]
    pub fn from_toml<'env>(env: &'env Env, text: String) -> napi::Result<PromiseRaw<'env, Swarm>> {
        let config = std::env::current_dir()
            .map_err(|e| Failure::Config(format!("cannot read the current directory: {e}")))
            .and_then(|dir| Config::parse(&text, "<toml>", &dir).map_err(|e| Failure::Config(e.to_string())));
        settle(env, Ok((None, start(config))))
    }

    /// Starts the built-in role `demo` (methods `echo`, `sleep {ms}`,
    /// `wordcount {text}`, `fail {message}`), whose agents run on Node itself.
    #[napi(ts_return_type = "Promise<Swarm>")]
    pub fn demo(env: &Env) -> napi::Result<PromiseRaw<'_, Swarm>> {
        let config = demo::agent_command().map(skep_swarm::demo_config).map_err(Failure::Config);
        settle(env, Ok((None, start(config))))
    }

    /// Connects to the shared daemon of a config (docs/daemon.md) and
    /// resolves with a `Swarm` whose methods run there, on warm agents that
    /// outlive this process. Without `config` or `socket`: the nearest
    /// skep.toml from the current directory up, else the demo's daemon. The
    /// daemon is started if none runs (`autoStart`, default true), with the
    /// `skep` executable on PATH or `options.skep`. `close()` ends the
    /// connection, not the daemon.
    #[napi(ts_return_type = "Promise<Swarm>")]
    pub fn connect<'env>(env: &'env Env, options: Option<ConnectOptions>) -> napi::Result<PromiseRaw<'env, Swarm>> {
        let target = options::connect_target(options);
        settle(
            env,
            Ok((None, async move {
                let remote = Remote::connect(target?).await?;
                Ok(Swarm { inner: Backend::Remote(Arc::new(remote)), observations: Default::default() })
            })),
        )
    }

    /// Calls `method` on an agent of `role` and resolves with its result.
    #[napi(ts_generic_types = "T = any", ts_return_type = "Promise<T>")]
    pub fn call<'env>(
        &self,
        env: &'env Env,
        role: String,
        method: String,
        #[napi(ts_arg_type = "unknown")] params: Option<Unknown<'env>>,
        options: Option<CallOptions<'env>>,
    ) -> napi::Result<PromiseRaw<'env, Answer>> {
        let swarm = self.inner.clone();
        let prepared = (|| -> Prepared<'env, _> {
            let (params, Checked { call, signal, progress }) =
                (json::params(env, params)?, Checked::try_from(options)?);
            Ok((signal, async move {
                match swarm {
                    Backend::Local(swarm) => {
                        let called = async move { swarm.call(&role, &method, params.as_deref(), call).await };
                        Ok(Answer::Text(progress::relayed(progress, called).await?))
                    }
                    Backend::Remote(remote) => {
                        let mut request = json!({ "role": role, "method": method, "params": raw(params) });
                        call_fields(&mut request, call);
                        remote
                            .request_with_progress("swarm/call", request, Some(call), progress)
                            .await
                            .map(Answer::Value)
                    }
                }
            }))
        })();
        // Its first steps run here (`handoff.rs`): a cache hit settles with no
        // thread hop, and an idle agent's request is written from this thread.
        settle_here(env, prepared)
    }

    /// One call of `method` per element of `params`, all settled, in input order.
    #[napi(ts_return_type = "Promise<Settled[]>")]
    pub fn fanout<'env>(
        &self,
        env: &'env Env,
        role: String,
        method: String,
        #[napi(ts_arg_type = "unknown[]")] params: Vec<Value>,
        options: Option<FanoutOptions<'env>>,
    ) -> napi::Result<PromiseRaw<'env, Value>> {
        let swarm = self.inner.clone();
        let prepared = (|| -> Prepared<'env, _> {
            let params = options::params_list(params)?;
            let (max_parallel, Checked { call, signal, .. }) = options::fanout_options(options)?;
            Ok((signal, async move {
                match swarm {
                    Backend::Local(swarm) => json(swarm.fanout(&role, &method, params, max_parallel, call).await?),
                    Backend::Remote(remote) => {
                        let params: Vec<Value> = params.into_iter().map(|p| raw(Some(p))).collect();
                        let mut request = json!({ "role": role, "method": method, "params": params });
                        if let Some(n) = max_parallel {
                            request["maxParallel"] = json!(n);
                        }
                        call_fields(&mut request, call);
                        remote.request("swarm/fanout", request, Some(call)).await
                    }
                }
            }))
        })();
        settle(env, prepared)
    }

    /// Runs the calls at once and resolves with the first success; the others
    /// are cancelled on the wire. Rejects with `SKEP_ALL_FAILED` if all fail.
    #[napi(ts_return_type = "Promise<RaceWin>")]
    pub fn race<'env>(
        &self,
        env: &'env Env,
        calls: Vec<RaceCall>,
        options: Option<CallOptions<'env>>,
    ) -> napi::Result<PromiseRaw<'env, Value>> {
        let swarm = self.inner.clone();
        let prepared = (|| -> Prepared<'env, _> {
            let calls = calls
                .into_iter()
                .map(|c| {
                    Ok(skep_swarm::RaceCall { role: c.role, method: c.method, params: options::params(c.params)? })
                })
                .collect::<Result<Vec<_>, Failure>>()?;
            let Checked { call, signal, progress } = Checked::try_from(options)?;
            Ok((signal, async move {
                match swarm {
                    Backend::Local(swarm) => json(progress::relayed(progress, swarm.race(calls, call)).await?),
                    Backend::Remote(remote) => {
                        let calls: Vec<Value> = calls
                            .into_iter()
                            .map(|c| json!({ "role": c.role, "method": c.method, "params": raw(c.params) }))
                            .collect();
                        let mut request = json!({ "calls": calls });
                        call_fields(&mut request, call);
                        remote.request("swarm/race", request, Some(call)).await
                    }
                }
            }))
        })();
        settle(env, prepared)
    }

    /// Calls `method` on every ready agent of `role`; all settled.
    #[napi(ts_return_type = "Promise<BroadcastReply[]>")]
    pub fn broadcast<'env>(
        &self,
        env: &'env Env,
        role: String,
        method: String,
        #[napi(ts_arg_type = "unknown")] params: Option<Value>,
        options: Option<CallOptions<'env>>,
    ) -> napi::Result<PromiseRaw<'env, Value>> {
        let swarm = self.inner.clone();
        let prepared = (|| -> Prepared<'env, _> {
            let (params, Checked { call, signal, progress }) = (options::params(params)?, Checked::try_from(options)?);
            Ok((signal, async move {
                match swarm {
                    Backend::Local(swarm) => {
                        let called = async move { swarm.broadcast(&role, &method, params.as_deref(), call).await };
                        json(progress::relayed(progress, called).await?)
                    }
                    Backend::Remote(remote) => {
                        let mut request = json!({ "role": role, "method": method, "params": raw(params) });
                        call_fields(&mut request, call);
                        remote.request("swarm/broadcast", request, Some(call)).await
                    }
                }
            }))
        })();
        settle(env, prepared)
    }

    /// The configured roles.
    #[napi(ts_return_type = "RoleInfo[]")]
    pub fn roles(&self) -> napi::Result<Value> {
        match &self.inner {
            Backend::Local(swarm) => {
                serde_json::to_value(swarm.roles()).map_err(|e| napi::Error::from_reason(e.to_string()))
            }
            Backend::Remote(remote) => Ok(remote.roles()),
        }
    }

    /// Every agent of every role, with its state.
    #[napi(ts_return_type = "Promise<AgentInfo[]>")]
    pub fn agents<'env>(&self, env: &'env Env) -> napi::Result<PromiseRaw<'env, Value>> {
        let swarm = self.inner.clone();
        settle(
            env,
            Ok((None, async move {
                match swarm {
                    Backend::Local(swarm) => json(swarm.agents().await),
                    Backend::Remote(remote) => remote.request("swarm/agents", json!([]), None).await,
                }
            })),
        )
    }

    /// Per-role counters, latency percentiles, breaker and cache.
    #[napi(ts_return_type = "Promise<SwarmStats>")]
    pub fn stats<'env>(&self, env: &'env Env) -> napi::Result<PromiseRaw<'env, Value>> {
        let swarm = self.inner.clone();
        settle(
            env,
            Ok((None, async move {
                match swarm {
                    Backend::Local(swarm) => json(swarm.stats().await),
                    Backend::Remote(remote) => remote.request("swarm/stats", json!([]), None).await,
                }
            })),
        )
    }

    /// Calls `listener` with every event of the swarm; returns the function
    /// that stops it. A listener does not keep Node running.
    #[napi(ts_args_type = "listener: (event: SwarmEvent) => void", ts_return_type = "() => void")]
    pub fn on_event<'env>(
        &self,
        env: &'env Env,
        listener: Function<'env, Value, ()>,
    ) -> napi::Result<Function<'env, (), ()>> {
        match &self.inner {
            Backend::Local(swarm) => events::listen(env, events::Source::Local(swarm.subscribe()), listener),
            Backend::Remote(remote) => events::listen(env, events::Source::Remote(Arc::clone(remote)), listener),
        }
    }

    /// Runs a workflow file (docs/workflows.md) over this swarm's roles and
    /// resolves with its record, failed or not (`record.ok`); the run is kept
    /// in `.skep/` beside the workflow, as `skep run` keeps it.
    #[napi(ts_return_type = "Promise<RunRecord>")]
    pub fn run_workflow<'env>(
        &self,
        env: &'env Env,
        file: String,
        options: Option<WorkflowOptions<'env>>,
    ) -> napi::Result<PromiseRaw<'env, Value>> {
        let backend = self.inner.clone();
        let prepared = (|| -> Prepared<'env, _> {
            let CheckedWorkflow { run, on_progress, signal } = CheckedWorkflow::try_from(options)?;
            let progress = on_progress.map(progress::listener).transpose()?;
            let swarm = match backend {
                Backend::Local(swarm) => swarm,
                Backend::Remote(remote) => {
                    return Ok((
                        signal,
                        Box::pin(async move {
                            let send = move |p: Value| progress::send_value(progress.as_ref(), p);
                            remote.run_workflow(file.as_ref(), run.jobs, !run.use_cache, send).await
                        }) as futures::future::BoxFuture<'static, _>,
                    ));
                }
            };
            let workflow = Workflow::load(file.as_ref(), &swarm.config()).map_err(Failure::Workflow)?;
            Ok((
                signal,
                Box::pin(async move {
                    let record = run_workflow(&swarm, &workflow, run, |p| progress::send(progress.as_ref(), p)).await;
                    json(record.map_err(Failure::Workflow)?)
                }) as futures::future::BoxFuture<'static, _>,
            ))
        })();
        settle(env, prepared)
    }

    /// Serves the observe socket (docs/grid.md), so that `skep ls`, `skep
    /// stats` and `skep grid` can watch this swarm; resolves with its path.
    /// Without `path`: a private per-user directory. A config file's
    /// `[observe] socket` is served from the start. Closed with the swarm.
    #[napi(ts_return_type = "Promise<string>")]
    pub fn observe<'env>(&self, env: &'env Env, path: Option<String>) -> napi::Result<PromiseRaw<'env, String>> {
        let (swarm, observations) = (self.inner.clone(), self.observations.clone());
        let options = ObserveOptions { path: path.map(PathBuf::from), config: None };
        settle(
            env,
            Ok((None, async move {
                match swarm {
                    Backend::Local(swarm) => serve_observer(swarm, options, &observations).await,
                    // A daemon is observed through its own control socket already.
                    Backend::Remote(remote) => Ok(remote.socket().display().to_string()),
                }
            })),
        )
    }

    /// Stops every agent by the stop ladder (stdin closed, SIGTERM, SIGKILL)
    /// and resolves once all have exited. Later calls reject with `SKEP_CLOSED`.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn close<'env>(&self, env: &'env Env) -> napi::Result<PromiseRaw<'env, ()>> {
        let (swarm, observations) = (self.inner.clone(), self.observations.clone());
        let close = async move {
            let serving = std::mem::take(&mut *observations.lock().unwrap_or_else(PoisonError::into_inner));
            futures::future::join_all(serving.into_iter().map(Observation::close)).await;
            match swarm {
                Backend::Local(swarm) => swarm.shutdown().await,
                // The daemon and its agents go on serving other clients.
                Backend::Remote(remote) => remote.close(),
            }
            Ok(())
        };
        settle(env, Ok((None, close)))
    }
}

async fn start(config: Result<Config, Failure>) -> Result<Swarm, Failure> {
    let mut config = config?;
    let observe_at = config.observe.take();
    let source = config.source.clone();
    // Remote roles reach the config's `[cluster]`, as they do from the CLI and the daemon.
    let inner = skep_cluster::start_swarm(config, "skep node").await?;
    let observations = Arc::default();
    if let Some(path) = observe_at {
        let options = ObserveOptions { path: Some(path), config: source };
        serve_observer(inner.clone(), options, &observations).await?;
    }
    Ok(Swarm { inner: Backend::Local(inner), observations })
}

/// Params passed through to the daemon as they were given.
fn raw(params: Option<Box<serde_json::value::RawValue>>) -> Value {
    params.and_then(|p| serde_json::from_str(p.get()).ok()).unwrap_or(Value::Null)
}

/// Starts an observe socket and keeps it with the swarm's others; its path.
async fn serve_observer(
    swarm: skep_swarm::Swarm,
    options: ObserveOptions,
    observations: &Mutex<Vec<Observation>>,
) -> Result<String, Failure> {
    let observation = observe(swarm, options).await.map_err(Failure::Observe)?;
    let path = observation.path().display().to_string();
    observations.lock().unwrap_or_else(PoisonError::into_inner).push(observation);
    Ok(path)
}
