//! Remote workers as `skep stats`, `status` and `ls` show them: through the
//! config's daemon, from the heartbeats of real `skep worker` processes.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use skep_testkit::wait_gone;

use crate::support::{Cli, LIMIT, Nats, Proc, Scratch, TOKEN, parent_of, worker};
use crate::{ran, stop_all};

/// Asks `skep stats --json` until `ready` holds for its `workers`, within [`LIMIT`]; returns them.
async fn workers_until(cli: &Cli<'_>, what: &str, ready: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        let stats = cli.json(&["stats", "--json"]).await;
        let workers = stats["stats"]["workers"].as_array().cloned().expect("a cluster's stats list its workers");
        if ready(&workers) {
            return workers;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what}: never within {LIMIT:?}; last {workers:#?}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

fn pids(workers: &[Value]) -> Vec<u64> {
    let mut pids: Vec<u64> = workers.iter().filter_map(|w| w["pid"].as_u64()).collect();
    pids.sort_unstable();
    pids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_and_status_show_each_remote_worker_and_its_agents_until_it_dies() {
    let nats = Nats::start().await;
    let scratch = Scratch::new();
    let config = scratch.worker_config_in("heartbeat = \"200ms\"", &[("echo", "min_warm = 2\nmax_agents = 2")]);
    let mut workers: Vec<Proc> =
        (0..2).map(|i| worker(&nats, &config, TOKEN, &scratch.path(&format!("w{i}.log")))).collect();
    let cli = Cli::new(&scratch, &nats, "[roles.echo]\nremote = true\n");
    let mut expected: Vec<u64> = workers.iter().map(|w| u64::from(w.pid())).collect();
    expected.sort_unstable();

    // Both workers, each with its two agents up: pids are the real processes'.
    let seen = workers_until(&cli, "two workers with two agents each", |ws| {
        pids(ws) == expected && ws.iter().all(|w| w["agents"].as_array().is_some_and(|a| a.len() == 2))
    })
    .await;
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("hostname").trim().to_owned();
    for w in &seen {
        let pid = w["pid"].as_u64().expect("pid");
        assert_eq!(w["host"], json!(host), "{w}");
        assert_eq!(w["id"], json!(format!("{host}-{pid}")), "{w}");
        assert_eq!((&w["capacity"], &w["draining"], &w["intervalMs"]), (&json!(2), &json!(false), &json!(200)));
        assert!(w["ageMs"].as_u64().is_some_and(|age| age < 600), "a live worker's heartbeat is fresh: {w}");
        for agent in w["agents"].as_array().expect("agents") {
            let agent_pid = agent["pid"].as_u64().expect("agent pid") as u32;
            if agent_pid != 0 {
                assert_eq!(parent_of(agent_pid).map(u64::from), Some(pid), "{agent} is not its worker's child");
            }
        }
    }

    // Calls show up per agent, as each agent's own journal counts them.
    for i in 0..6 {
        let printed = cli.run(&["call", "echo", "echo", &json!([i]).to_string()]).await;
        assert_eq!(serde_json::from_str::<Value>(&printed).expect("JSON"), json!([i]));
    }
    let counted = workers_until(&cli, "the six calls counted", |ws| {
        ws.iter()
            .flat_map(|w| w["agents"].as_array().into_iter().flatten())
            .filter_map(|a| a["calls"].as_u64())
            .sum::<u64>()
            == 6
    })
    .await;
    let journals = scratch.journals();
    assert_eq!(ran(&journals, "echo").len(), 6);
    let shown: BTreeMap<u32, u64> = (counted.iter().flat_map(|w| w["agents"].as_array().into_iter().flatten()))
        .map(|a| (a["pid"].as_u64().expect("pid") as u32, a["calls"].as_u64().expect("calls")))
        .filter(|(_, calls)| *calls > 0)
        .collect();
    let journaled: BTreeMap<u32, u64> = (journals.iter())
        .map(|(pid, lines)| (*pid, lines.iter().filter(|e| e["method"] == "echo").count() as u64))
        .filter(|(_, calls)| *calls > 0)
        .collect();
    assert_eq!(shown, journaled, "each agent's calls as its heartbeat says and as it journaled");

    // `skep status` says the same, in JSON and in its table; `skep ls` counts them.
    let status = cli.json(&["status", "--json"]).await;
    assert_eq!(status["daemon"]["remote"], json!({"workers": 2, "agents": 4}));
    assert_eq!(pids(status["stats"]["workers"].as_array().expect("workers")), expected);
    let table = cli.run(&["status"]).await;
    assert!(table.contains("remote   2 workers, 4 agents"), "{table}");
    let listed = cli.run_without_config(&["ls"]).await;
    let daemon = status["daemon"]["pid"].as_u64().expect("the daemon's pid").to_string();
    let row = listed.lines().find(|l| l.split_whitespace().next() == Some(&daemon));
    let row = row.unwrap_or_else(|| panic!("`skep ls` lists no daemon {daemon}:\n{listed}"));
    assert_eq!(row.split_whitespace().nth(4), Some("2w/4a"), "the REMOTE column: {row}");
    for w in &seen {
        let id = w["id"].as_str().expect("id");
        assert!(table.lines().any(|l| l.starts_with(id) && l.contains(" up ")), "no row for {id}:\n{table}");
    }

    // A killed worker disappears once its heartbeats are missed; the other stays.
    let mut victim = workers.remove(0);
    let victim_pid = u64::from(victim.pid());
    victim.signal(libc::SIGKILL);
    victim.exited().await;
    let survivor = u64::from(workers[0].pid());
    workers_until(&cli, "only the surviving worker", |ws| pids(ws) == [survivor]).await;
    assert_ne!(victim_pid, survivor);
    let victims_agents: Vec<u32> = (seen.iter().filter(|w| w["pid"] == victim_pid))
        .flat_map(|w| w["agents"].as_array().into_iter().flatten())
        .filter_map(|a| a["pid"].as_u64().map(|p| p as u32))
        .collect();
    wait_gone(&victims_agents, "the killed worker's agents").await;
    drop(cli);
    stop_all(&mut workers, &scratch).await;
}
