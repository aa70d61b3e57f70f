//! Hot reload under a steady stream of calls (reliability 28): unchanged
//! roles keep their agents, changed ones roll over with the new agents warm
//! first, removed ones drain, and no call fails because of the reload.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use serde_json::{Value, json};
use skep_swarm::{ReloadReport, RoleConfig, Swarm};
use skep_testkit::{STEP, agent_role, call, config, eventually, start, wait_gone};

fn role(name: &str, flags: &[&str]) -> RoleConfig {
    let mut role = agent_role(name, flags);
    role.min_warm = 2;
    role.max_agents = 2;
    role
}

async fn pids(swarm: &Swarm, role: &str) -> BTreeSet<u32> {
    swarm.agents().await.into_iter().filter(|a| a.role == role && a.pid != 0).map(|a| a.pid).collect()
}

/// Calls `role` back to back until `stop`, counting answers in `answered`; its failures.
fn stream(
    swarm: &Swarm,
    role: &'static str,
    stop: Arc<AtomicBool>,
    answered: Arc<AtomicUsize>,
) -> tokio::task::JoinHandle<Vec<String>> {
    let swarm = swarm.clone();
    tokio::spawn(async move {
        let mut failures = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            match call(&swarm, role, "sleep", json!({"ms": 5})).await {
                Ok(_) => answered.fetch_add(1, Ordering::Relaxed),
                Err(e) => {
                    failures.push(e.to_string());
                    // A removed role fails at once, forever: one failure says it.
                    break;
                }
            };
        }
        failures
    })
}

/// The answers counted so far, per stream.
fn counts(answered: &[Arc<AtomicUsize>]) -> Vec<usize> {
    answered.iter().map(|n| n.load(Ordering::Relaxed)).collect()
}

#[tokio::test]
async fn reload_keeps_unchanged_roles_rolls_changed_ones_and_fails_no_call() {
    let swarm = start(vec![role("steady", &[]), role("changing", &["--tag", "1"]), role("leaving", &[])]).await;
    let (steady_before, changing_before, leaving_before) =
        (pids(&swarm, "steady").await, pids(&swarm, "changing").await, pids(&swarm, "leaving").await);
    assert_eq!((steady_before.len(), changing_before.len()), (2, 2));

    let stop = Arc::new(AtomicBool::new(false));
    let answered: Vec<Arc<AtomicUsize>> = (0..4).map(|_| Arc::default()).collect();
    let streams: Vec<_> = ["steady", "changing", "changing", "leaving"]
        .into_iter()
        .zip(&answered)
        .map(|(r, n)| stream(&swarm, r, Arc::clone(&stop), Arc::clone(n)))
        .collect();
    // Calls are flowing on every role before the reload starts.
    eventually("every stream answered twice", STEP, || counts(&answered).iter().all(|&n| n >= 2)).await;

    let next = config(vec![role("steady", &[]), role("changing", &["--tag", "2"]), role("arriving", &[])]);
    let report = tokio::time::timeout(STEP, swarm.reload(next)).await.expect("reload within the bound");
    assert_eq!(
        report,
        ReloadReport {
            kept: vec!["steady".into()],
            replaced: vec!["changing".into()],
            added: vec!["arriving".into()],
            removed: vec!["leaving".into()],
        }
    );
    // Calls go on flowing on the new generation of the roles that stayed.
    let at_swap = counts(&answered);
    eventually("the staying streams answered twice more", STEP, || {
        counts(&answered).iter().zip(&at_swap).take(3).all(|(now, then)| *now >= then + 2)
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    for (i, s) in streams.into_iter().enumerate() {
        let failures = s.await.expect("stream task");
        // The leaving role's stream ends with "unknown role" once it is gone: that is the
        // config saying so, not the reload failing a call. Every other stream: zero failures.
        if i == 3 {
            assert!(failures.len() == 1 && failures[0].contains("unknown role"), "{failures:?}");
        } else {
            assert!(failures.is_empty(), "calls failed across the reload: {failures:?}");
        }
    }

    assert_eq!(pids(&swarm, "steady").await, steady_before, "an unchanged role keeps its warm agents");
    let changing_after = pids(&swarm, "changing").await;
    assert_eq!(changing_after.len(), 2);
    assert!(changing_after.is_disjoint(&changing_before), "a changed role gets new agents");
    let old: Vec<u32> = changing_before.iter().chain(&leaving_before).copied().collect();
    wait_gone(&old, "the replaced and removed roles' old agents").await;
    assert_eq!(pids(&swarm, "arriving").await.len(), 2, "an added role starts warm");
    let roles: Vec<String> = swarm.roles().into_iter().map(|r| r.name).collect();
    assert_eq!(roles, ["arriving", "changing", "steady"]);
    let answer: Value = call(&swarm, "changing", "echo", json!([1])).await.unwrap();
    assert_eq!(answer, json!([1]));
    swarm.shutdown().await;
}
