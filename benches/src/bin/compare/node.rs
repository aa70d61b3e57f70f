//! Scenario 6: Node in-process, skep's Node package against a hand-written
//! `child_process` pool (`peers/node_pool.js`) of the same Python agent.
//!
//! The package side is a hook: `peers/skep_node.js` reports itself skipped
//! until `orchestrator-bindings/` is built, and the row says so.

use skep_benches::summary::{Metric, Scenario, Side, Unit};

use crate::python::heavy_config;
use crate::runner::{self, Contender, Fut, Outcome, Plan};
use crate::setup::Env;

/// A round of `peers/skep_node.js`: `calls` calls to the role `heavy` of `config`.
pub fn skep_package(
    env: &Env,
    config: String,
    calls: String,
) -> impl FnMut() -> Fut<'static, anyhow::Result<Outcome>> + use<> {
    let script = env.peer("skep_node.js");
    move || {
        let (script, config, calls) = (script.clone(), config.clone(), calls.clone());
        Box::pin(async move { runner::driver("node", &[&script, &calls, &config]).await })
    }
}

/// Scenario 6's entry point.
pub fn scenario(env: &Env, plan: Plan) -> Fut<'_, anyhow::Result<Scenario>> {
    Box::pin(async move {
        let config = heavy_config(env, 2)?;
        let calls = plan.pick(500, 100).to_string();
        let pool = env.peer("node_pool.js");
        let python = env.python.display().to_string();
        let metrics =
            vec![Metric { key: "call", label: "one warm call, 100 B echo", unit: Unit::Nanos, share_of_work: false }];
        let contenders = vec![
            Contender::new("skep Node package, 2 warm agents", Side::Skep, skep_package(env, config, calls.clone())),
            Contender::new("hand-written Node child_process pool, 2 warm agents", Side::Peer, move || {
                let (pool, calls, python) = (pool.clone(), calls.clone(), python.clone());
                Box::pin(async move {
                    runner::driver_with("node", &[&pool, &calls, "2"], &[("SKEP_BENCH_PYTHON", &python)]).await
                })
            }),
        ];
        runner::run("6 Node in-process", metrics, contenders, plan.pick(5, 2)).await
    })
}
