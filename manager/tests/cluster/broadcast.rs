//! `swarm/broadcast` over a remote role reaches every agent of every worker
//! serving it, one entry per agent, and a worker that cannot answer is
//! reported, not waited for (docs/cluster.md).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use skep_swarm::{BroadcastReply, CallOptions, Settled, Swarm};

use crate::stop_all;
use crate::support::{LIMIT, Nats, Proc, Scratch, TOKEN, orchestrator, parent_of, worker};

const AGENTS: usize = 2;

/// Broadcasts `pid` to role `echo`, bounded by `timeout` and the test's limit.
async fn broadcast_pid(swarm: &Swarm, timeout: Duration) -> Vec<BroadcastReply> {
    let options = CallOptions { timeout: Some(timeout), ..CallOptions::default() };
    let replies = tokio::time::timeout(LIMIT, swarm.broadcast("echo", "pid", None, options));
    replies.await.expect("the broadcast ends within the limit").expect("the broadcast is answered")
}

/// The agent's pid from an answer of `pid`.
fn pid_of(reply: &BroadcastReply) -> u32 {
    match &reply.outcome {
        Settled::Ok(value) => value.get().parse().unwrap_or_else(|e| panic!("{}: not a pid ({e})", reply.agent)),
        Settled::Error(e) => panic!("{} answered an error: {e:?}", reply.agent),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcast_reaches_every_agent_of_every_worker_and_reports_a_dead_worker() {
    let nats = Nats::start().await;
    let scratch = Scratch::new();
    let config = scratch.worker_config(&[("echo", &format!("min_warm = {AGENTS}\nmax_agents = {AGENTS}"))]);
    let mut workers: Vec<Proc> =
        (0..3).map(|i| worker(&nats, &config, TOKEN, &scratch.path(&format!("w{i}.log")))).collect();
    let (swarm, heard) = orchestrator(&nats, "[roles.echo]\nremote = true\n").await;
    // Every worker is heard from with both its agents ready.
    let ready = heard
        .workers()
        .wait_for(LIMIT, |alive| {
            alive.len() == 3
                && alive.iter().all(|w| w.agents.iter().filter(|a| a.role == "echo" && a.pid != 0).count() == AGENTS)
        })
        .await;
    assert!(ready, "workers and agents not all ready: {:?}", heard.workers().alive());

    let replies = broadcast_pid(&swarm, Duration::from_secs(5)).await;
    assert_eq!(replies.len(), 3 * AGENTS, "{replies:?}");
    // Six real agents: distinct pids, each a child of one of the workers, two per worker.
    let pids: BTreeSet<u32> = replies.iter().map(pid_of).collect();
    assert_eq!(pids.len(), 3 * AGENTS, "{replies:?}");
    let mut per_worker: BTreeMap<u32, usize> = BTreeMap::new();
    for pid in &pids {
        *per_worker.entry(parent_of(*pid).expect("the agent is alive")).or_default() += 1;
    }
    let expected: BTreeMap<u32, usize> = workers.iter().map(|w| (w.pid(), AGENTS)).collect();
    assert_eq!(per_worker, expected);
    // The agents answered the broadcast itself: each journaled one `pid` request.
    let journals = scratch.journals();
    for pid in &pids {
        let asked = journals.get(pid).map_or(0, |lines| lines.iter().filter(|l| l["method"] == "pid").count());
        assert_eq!(asked, 1, "agent {pid} journal: {:?}", journals.get(pid));
    }
    // Each entry names its agent on its worker.
    let names: BTreeSet<&str> = replies.iter().map(|r| r.agent.as_str()).collect();
    assert_eq!(names.len(), 3 * AGENTS);
    for beat in heard.workers().alive() {
        let on_it = names.iter().filter(|n| n.ends_with(&format!("@{}", beat.id))).count();
        assert_eq!(on_it, AGENTS, "{names:?}");
    }

    // One worker is killed: the others answer, the dead one's agents are error entries.
    let dead = workers.remove(0);
    let dead_id = (heard.workers().alive().into_iter())
        .find(|w| w.pid == dead.pid())
        .map(|w| w.id)
        .expect("the worker to kill is heard from");
    dead.signal(libc::SIGKILL);
    drop(dead);
    let replies = broadcast_pid(&swarm, Duration::from_secs(2)).await;
    assert_eq!(replies.len(), 3 * AGENTS, "{replies:?}");
    let (lost, answered): (Vec<_>, Vec<_>) = replies.iter().partition(|r| r.agent.ends_with(&format!("@{dead_id}")));
    assert_eq!(lost.len(), AGENTS, "{replies:?}");
    for reply in lost {
        let Settled::Error(e) = &reply.outcome else { panic!("the dead worker's agent answered: {reply:?}") };
        assert_eq!(e.code(), skep_bridge::code::TIMEOUT, "{e:?}");
        assert!(e.message().contains(&dead_id), "{e:?}");
    }
    let live: BTreeSet<u32> = answered.iter().map(|r| pid_of(r)).collect();
    assert_eq!(live.len(), 2 * AGENTS);
    assert!(live.iter().all(|pid| parent_of(*pid).is_some_and(|p| workers.iter().any(|w| w.pid() == p))));

    stop_all(&mut workers, &scratch).await;
}
