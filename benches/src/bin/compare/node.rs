//! Scenario 6: Node driving the same Python agent three ways: skep's Node
//! package in-process (napi), a spawned `skep serve` over vscode-jsonrpc, and
//! a hand-written `child_process` pool (`peers/node_pool.js`). Each measures
//! one call at a time and batches of 1,024 with 128 in flight
//! (`peers/node_timing.js`).
//!
//! The package's row reports itself skipped when `orchestrator-bindings/` has
//! not been built (`npm install && npm run build` there).

use skep_benches::summary::{Metric, Scenario, Side, Unit};

use crate::python::heavy_config;
use crate::runner::{self, Contender, Fut, Outcome, Plan};
use crate::setup::Env;

/// Calls in one timed batch (with 128 in flight), as `peers/node_timing.js` sends them.
const BATCH: u64 = 1024;

/// A round of `peers/skep_node.js`: `calls` single calls and `batches`
/// batches to the role `heavy` of `config`.
pub fn skep_package(
    env: &Env,
    config: String,
    calls: String,
    batches: String,
) -> impl FnMut() -> Fut<'static, anyhow::Result<Outcome>> + use<> {
    node_driver(env, "skep_node.js", vec![calls, batches, config], vec![])
}

/// A round of a Node driver in `peers/`, with its arguments and environment.
fn node_driver(
    env: &Env,
    script: &str,
    args: Vec<String>,
    vars: Vec<(&'static str, String)>,
) -> impl FnMut() -> Fut<'static, anyhow::Result<Outcome>> + use<> {
    let script = env.peer(script);
    move || {
        let (script, args, vars) = (script.clone(), args.clone(), vars.clone());
        Box::pin(async move {
            let argv: Vec<&str> = std::iter::once(script.as_str()).chain(args.iter().map(String::as_str)).collect();
            let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
            runner::driver_with("node", &argv, &vars).await
        })
    }
}

/// Scenario 6's entry point.
pub fn scenario(env: &Env, plan: Plan) -> Fut<'_, anyhow::Result<Scenario>> {
    Box::pin(async move {
        let config = heavy_config(env, 2)?;
        let calls = plan.pick(500, 100).to_string();
        let batches = plan.pick(10, 2).to_string();
        let python = env.python.display().to_string();
        let metrics = vec![
            Metric { key: "call", label: "one warm call, 100 B echo", unit: Unit::Nanos, share_of_work: false },
            Metric {
                key: "batch",
                label: "1,024 calls, 128 in flight",
                unit: Unit::Batch(BATCH),
                share_of_work: false,
            },
        ];
        let sidecar_args = vec![calls.clone(), batches.clone(), env.exe("skep"), config.clone()];
        let pool_args = vec![calls.clone(), batches.clone(), "2".to_owned()];
        let contenders = vec![
            Contender::new(
                "skep Node package (napi), 2 warm agents",
                Side::Skep,
                skep_package(env, config, calls, batches),
            ),
            Contender::new(
                "skep serve over vscode-jsonrpc, 2 warm agents",
                Side::Skep,
                node_driver(env, "skep_sidecar_node.js", sidecar_args, vec![]),
            ),
            Contender::new(
                "hand-written Node child_process pool, 2 warm agents",
                Side::Peer,
                node_driver(env, "node_pool.js", pool_args, vec![("SKEP_BENCH_PYTHON", python)]),
            ),
        ];
        runner::run("6 Node in-process", metrics, contenders, plan.pick(5, 2)).await
    })
}
