//! `spill = "remote"`: a role with a local pool that overflows to a worker
//! once every local agent is busy at its concurrency and `max_agents` is reached.

use std::collections::BTreeMap;

use futures::StreamExt;
use serde_json::json;
use skep_testkit::call;

use crate::support::{Nats, Proc, Scratch, TOKEN, orchestrator, parent_of, wait_workers, worker};
use crate::{ran, stop_all};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saturated_local_pool_spills_to_a_worker_and_serves_the_rest_itself() {
    let nats = Nats::start().await;
    let scratch = Scratch::new();
    let pool = "min_warm = 1\nmax_agents = 1\nconcurrency = 1";
    let config = scratch.worker_config(&[("slow", "min_warm = 2\nmax_agents = 2")]);
    let mut workers: Vec<Proc> = vec![worker(&nats, &config, TOKEN, &scratch.path("w0.log"))];
    // The same agent, journaling to the same place, as the orchestrator's own local pool of one.
    let agent = skep_testkit::test_agent();
    let journal = scratch.path("journal").display().to_string();
    let local =
        format!("[roles.slow]\ncommand = [{agent:?}, \"--journal\", {journal:?}]\n{pool}\nspill = \"remote\"\n");
    let (swarm, heard) = orchestrator(&nats, &local).await;
    wait_workers(heard.workers(), 1).await;

    let calls = 8_i64;
    let answers: Vec<_> = futures::stream::iter(0..calls)
        .map(|n| {
            let swarm = swarm.clone();
            async move { (n, call(&swarm, "slow", "sleep", json!({"ms": 300, "n": n})).await) }
        })
        .buffer_unordered(calls as usize)
        .collect()
        .await;
    for (n, answer) in answers {
        assert_eq!(answer.unwrap_or_else(|e| panic!("call {n}: {e}")), json!({"slept": 300}));
    }
    // Each call ran once; who ran it is told by its agent's parent: this process or the worker.
    let journals = scratch.journals();
    let mut runs: Vec<i64> = ran(&journals, "sleep").iter().map(|e| e["params"]["n"].as_i64().expect("n")).collect();
    runs.sort_unstable();
    assert_eq!(runs, (0..calls).collect::<Vec<_>>());
    let mut by_parent: BTreeMap<u32, usize> = BTreeMap::new();
    for (agent, lines) in &journals {
        let parent = parent_of(*agent).expect("the agent is alive");
        *by_parent.entry(parent).or_default() += lines.iter().filter(|e| e["method"] == "sleep").count();
    }
    let (here, there) = (std::process::id(), workers[0].pid());
    assert!(by_parent.get(&here).is_some_and(|n| *n >= 1), "the local agent served none: {by_parent:?}");
    assert!(by_parent.get(&there).is_some_and(|n| *n >= 1), "the worker served none: {by_parent:?}");
    assert!(by_parent.keys().all(|p| [here, there].contains(p)), "{by_parent:?}");
    // The role's stats count each call once, spilled or not (a spill the worker
    // turned away at its capacity and that then ran here is not a second call).
    let stats = swarm.stats().await;
    let role = stats.roles.iter().find(|r| r.role == "slow").expect("the role");
    assert_eq!((role.calls, role.cancelled, role.errors.len()), (calls as u64, 0, 0), "{role:?}");
    swarm.shutdown().await;
    stop_all(&mut workers, &scratch).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_only_workers_advertise_is_callable_while_one_does() {
    let nats = Nats::start().await;
    let scratch = Scratch::new();
    let config = scratch.worker_config(&[("echo", "min_warm = 1")]);
    let mut workers: Vec<Proc> = vec![worker(&nats, &config, TOKEN, &scratch.path("w0.log"))];
    // The orchestrator's config knows another role only.
    let agent = skep_testkit::test_agent();
    let (swarm, heard) = orchestrator(&nats, &format!("[roles.local]\ncommand = [{agent:?}]\n")).await;
    wait_workers(heard.workers(), 1).await;
    for i in 0..5 {
        assert_eq!(call(&swarm, "echo", "echo", json!([i])).await.expect("the advertised role answers"), json!([i]));
    }
    let journals = scratch.journals();
    assert_eq!(ran(&journals, "echo").len(), 5);
    assert!(journals.keys().all(|a| parent_of(*a) == Some(workers[0].pid())), "ran on the worker's agents");
    // Once no worker advertises it, it is an unknown role again, naming the local ones.
    stop_all(&mut workers, &scratch).await;
    heard.workers().wait_for(crate::support::LIMIT, |alive| alive.is_empty()).await;
    let err = call(&swarm, "echo", "echo", json!([9])).await.expect_err("no worker advertises echo");
    assert!(
        matches!(&err, skep_swarm::SwarmError::UnknownRole { role, known } if role == "echo" && known == &["local"]),
        "{err:?}"
    );
    swarm.shutdown().await;
}
