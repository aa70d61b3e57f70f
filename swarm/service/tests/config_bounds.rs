//! Durations from `skep.toml` through a real swarm: what `swarm/roles` reports
//! is what the loader read and what calls are held to (issue 19 item 5: a huge
//! timeout loaded and was reported as `timeoutMs: 100`).

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use skep_bridge::{Client, ClientConfig, Server, ServerConfig};
use skep_service::rpc_module;
use skep_swarm::{Config, ConfigError, Swarm};
use skep_testkit::{gone, test_agent, wait_gone};
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

const STEP: Duration = Duration::from_secs(20);

fn config(timeout: &str) -> Result<Config, ConfigError> {
    let agent = test_agent();
    let text = format!("[roles.solo]\ncommand = [{agent:?}]\nmax_agents = 1\ntimeout = {timeout:?}\n");
    Config::parse(&text, "skep.toml", Path::new("/"))
}

async fn call(client: &Client, method: &str, params: Value) -> Value {
    timeout(STEP, client.call(method, params)).await.expect("answered in time").expect("the call succeeds")
}

#[test]
fn a_wrapping_timeout_is_a_load_error_naming_the_key_and_the_maximum() {
    let err = config("18446744073709551.716s").expect_err("must not load");
    assert_eq!(
        err.to_string(),
        "skep.toml:4:11: roles.solo.timeout: expected a duration of at most 30 days (\"720h\"), found \
         \"18446744073709551.716s\""
    );
}

#[tokio::test]
async fn roles_report_the_timeout_the_config_holds_at_its_maximum() {
    let config = config("720h").expect("the maximum loads");
    let configured = config.roles["solo"].timeout;
    let swarm = timeout(STEP, Swarm::start(config)).await.expect("in time").expect("started");
    let shutdown = CancellationToken::new();
    let server = Server::new(rpc_module(swarm.clone(), shutdown.clone()), ServerConfig::default());
    let (ours, theirs) = tokio::io::duplex(1 << 16);
    let (their_read, their_write) = tokio::io::split(theirs);
    let (our_read, our_write) = tokio::io::split(ours);
    let token = shutdown.clone();
    let served = tokio::spawn(async move { server.serve(their_read, their_write, token).await });
    let client = Client::connect(our_read, our_write, ClientConfig::default());

    let roles = call(&client, "swarm/roles", json!([])).await;
    assert_eq!(roles[0]["name"], "solo");
    assert_eq!(roles[0]["timeoutMs"], json!(configured.as_millis() as u64));
    assert_eq!(roles[0]["timeoutMs"], json!(2_592_000_000u64));
    // The deadline is usable, not just reported: a call under it answers.
    assert_eq!(call(&client, "swarm/call", json!({"role": "solo", "method": "echo", "params": [1]})).await, json!([1]));
    let agents = call(&client, "swarm/agents", json!([])).await;
    let pid = agents[0]["pid"].as_u64().expect("a live agent has a pid") as u32;
    assert!(!gone(pid));

    swarm.shutdown().await;
    shutdown.cancel();
    let _ = timeout(STEP, served).await;
    wait_gone(&[pid], "the agent after the swarm's shutdown").await;
}
