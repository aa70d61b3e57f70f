//! Issue 17: an agent's `$/progress` for a call reaches the call's caller
//! (inside `with_progress`) and the event stream, before the call's answer.

use std::sync::{Arc, Mutex};

use serde_json::json;
use skep_swarm::{Event, Progress, with_progress};
use skep_testkit::{STEP, agent_role, call, start};

#[tokio::test]
async fn an_agents_progress_reaches_its_caller_and_the_events_before_the_answer() {
    let swarm = start(vec![agent_role("worker", &[])]).await;
    let mut events = swarm.subscribe();
    let seen: Arc<Mutex<Vec<Progress>>> = Arc::default();
    let answer = {
        let seen = Arc::clone(&seen);
        let sink = move |p: Progress| seen.lock().expect("not poisoned").push(p);
        with_progress(sink, call(&swarm, "worker", "progress", json!({"steps": 2}))).await
    };
    assert_eq!(answer.expect("answered"), json!(2));
    // Delivered on the reader task before the answer: already there.
    let step = |f: f64, m: &str| Progress { fraction: Some(f), message: Some(m.to_owned()) };
    assert_eq!(*seen.lock().expect("not poisoned"), vec![step(0.5, "step 1"), step(1.0, "step 2")]);

    let mut relayed = Vec::new();
    while relayed.len() < 3 {
        match tokio::time::timeout(STEP, events.recv()).await.expect("an event in time").expect("not lagged") {
            Event::CallProgress { role, agent, method, fraction, message } => {
                assert_eq!((role.as_str(), agent.as_str(), method.as_str()), ("worker", "worker/1", "progress"));
                relayed.push(format!("{fraction:?} {message:?}"));
            }
            Event::CallFinished { method, .. } if method == "progress" => relayed.push("finished".to_owned()),
            _ => {}
        }
    }
    assert_eq!(relayed, ["Some(0.5) Some(\"step 1\")", "Some(1.0) Some(\"step 2\")", "finished"]);

    // A call outside `with_progress` still answers; its progress goes to the events only.
    assert_eq!(call(&swarm, "worker", "progress", json!({"steps": 1})).await.expect("answered"), json!(1));
    swarm.shutdown().await;
}
