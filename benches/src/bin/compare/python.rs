//! Scenario 2: one call to a Python agent that pays a heavy start-up
//! (`peers/heavy_agent.py`: real imports plus a documented 300 ms init).
//!
//! Rows, all driven from Python (`peers/py_driver.py`) except the Node
//! package's: skep serve · skep's Node package (skipped until it is built) ·
//! a new process per call · `concurrent.futures.ProcessPoolExecutor`.

use skep_benches::summary::{Metric, Scenario, Side, Unit};

use crate::node;
use crate::runner::{self, Contender, Fut, Plan, toml_str};
use crate::setup::Env;

/// A config with the role `heavy`: `agents` warm heavy_agent.py processes.
pub fn heavy_config(env: &Env, agents: usize) -> anyhow::Result<String> {
    let text = format!(
        "[roles.heavy]\ncommand = [{}, {}]\nmin_warm = {agents}\nmax_agents = {agents}\n",
        toml_str(&env.python.display().to_string()),
        toml_str(&env.peer("heavy_agent.py"))
    );
    Ok(env.scratch_file(&format!("heavy-{agents}.toml"), &text)?.display().to_string())
}

/// Scenario 2's entry point.
pub fn scenario(env: &Env, plan: Plan) -> Fut<'_, anyhow::Result<Scenario>> {
    Box::pin(async move {
        let config = heavy_config(env, 1)?;
        let python = env.python.display().to_string();
        let driver = env.peer("py_driver.py");
        let warm = plan.pick(500, 100).to_string();
        let cold = plan.pick(5, 2).to_string();
        let py = |mode: &'static str, calls: String| {
            let (python, driver, config, skep) = (python.clone(), driver.clone(), config.clone(), env.exe("skep"));
            move || -> Fut<'static, anyhow::Result<runner::Outcome>> {
                let args = [driver.clone(), mode.to_owned(), calls.clone(), skep.clone(), config.clone()];
                let python = python.clone();
                Box::pin(async move {
                    let args: Vec<&str> = args.iter().map(String::as_str).collect();
                    runner::driver(&python, &args).await
                })
            }
        };
        let metrics =
            vec![Metric { key: "call", label: "one warm call, 100 B echo", unit: Unit::Nanos, share_of_work: false }];
        let contenders = vec![
            Contender::new("skep serve, from Python: swarm/call", Side::Skep, py("skep", warm.clone())),
            Contender::new(
                "skep Node package: swarm.call",
                Side::Skep,
                node::skep_package(env, config.clone(), warm.clone(), "0".to_owned()),
            ),
            Contender::new("a new Python process per call", Side::Peer, py("spawn", cold)),
            Contender::new("ProcessPoolExecutor, 1 warm worker", Side::Peer, py("pool", warm)),
        ];
        runner::run("2 Python agent", metrics, contenders, plan.pick(5, 2)).await
    })
}
