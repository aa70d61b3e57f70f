//! A worker at capacity answers -32004 and runs nothing; the caller tries
//! again, with a growing pause, while the call's timeout lasts, so a call
//! that finds every worker busy waits for room instead of failing.

use serde_json::json;
use skep_testkit::call;

use crate::support::{Nats, Proc, Scratch, TOKEN, orchestrator, wait_workers, worker};
use crate::{ran, stop_all};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_that_finds_every_worker_busy_waits_for_room_within_its_timeout() {
    let nats = Nats::start().await;
    let scratch = Scratch::new();
    // One worker, room for one call.
    let config = scratch.worker_config(&[("one", "min_warm = 1\nmax_agents = 1\nconcurrency = 1")]);
    let mut workers: Vec<Proc> = vec![worker(&nats, &config, TOKEN, &scratch.path("w0.log"))];
    let (swarm, heard) = orchestrator(&nats, "[roles.one]\nremote = true\ntimeout = \"20s\"\n").await;
    wait_workers(heard.workers(), 1).await;

    let busy = {
        let swarm = swarm.clone();
        tokio::spawn(async move { call(&swarm, "one", "sleep", json!({"ms": 800})).await })
    };
    // The sleep has reached the agent: the worker's only place is taken.
    skep_testkit::eventually("the sleep to reach the agent", crate::support::LIMIT, || {
        !ran(&scratch.journals(), "sleep").is_empty()
    })
    .await;
    let answer = call(&swarm, "one", "echo", json!(["after"])).await.expect("the second call waits for room");
    assert_eq!(answer, json!(["after"]));
    assert_eq!(busy.await.expect("joined").expect("the sleep is answered"), json!({"slept": 800}));
    // Each ran once: the -32004 answers ran nothing.
    let journals = scratch.journals();
    assert_eq!((ran(&journals, "sleep").len(), ran(&journals, "echo").len()), (1, 1), "{journals:?}");
    stop_all(&mut workers, &scratch).await;
    swarm.shutdown().await;
}
