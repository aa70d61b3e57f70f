//! The idempotent cache's data-integrity fix (issue 19) as it was found:
//! `swarm/call` through the sidecar's method table, params written by hand,
//! against a real agent that echoes its params' exact text.

use serde_json::value::RawValue;
use skep_bridge::{Client, ClientConfig, RequestOptions, Server, ServerConfig};
use skep_service::rpc_module;
use skep_testkit::{STEP, agent_role, gone, start};
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn through_the_sidecar_each_caller_gets_its_own_params_back() {
    let mut role = agent_role("cached", &[]);
    role.max_agents = 1;
    role.idempotent = vec!["echo-raw".into()];
    let swarm = start(vec![role]).await;
    let shutdown = CancellationToken::new();
    let server = Server::new(rpc_module(swarm.clone(), shutdown.clone()), ServerConfig::default());
    let (ours, theirs) = tokio::io::duplex(1 << 20);
    let (their_read, their_write) = tokio::io::split(theirs);
    let (our_read, our_write) = tokio::io::split(ours);
    let token = shutdown.clone();
    tokio::spawn(async move { server.serve(their_read, their_write, token).await });
    let client = Client::connect(our_read, our_write, ClientConfig::default());
    let texts = [
        r#"{"n":123456789012345678901234567890}"#,
        r#"{"n":123456789012345678901234567891}"#,
        r#"{"n":-0.0}"#,
        r#"{"n":-0}"#,
        r#"{"s":"\ud800"}"#,
    ];
    for (i, text) in texts.iter().enumerate() {
        let request = format!(r#"{{"role":"cached","method":"echo-raw","params":{text}}}"#);
        let request = RawValue::from_string(request).expect("JSON");
        let result = timeout(STEP, client.call_raw("swarm/call", Some(&request), RequestOptions::default()))
            .await
            .expect("answered in time")
            .expect("answered");
        assert_eq!(result.get(), *text, "the caller's own result");
        assert_eq!(swarm.stats().await.roles[0].calls, i as u64 + 1, "the agent saw {text}");
    }
    let pids: Vec<u32> = swarm.agents().await.iter().map(|a| a.pid).filter(|p| *p != 0).collect();
    assert!(!pids.is_empty(), "an agent answered");
    shutdown.cancel();
    timeout(STEP, swarm.shutdown()).await.expect("shut down in time");
    skep_testkit::eventually("the agents to exit", STEP, || pids.iter().all(|p| gone(*p))).await;
}
