//! MCP stdio servers pooled as agents (`handshake = "mcp"`): the example
//! server in Python and a published one from npm.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};
use skep_swarm::{CallOptions, Handshake, RoleConfig, Swarm};
use skep_testkit::{call_with, start};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn mcp_role(name: &str, command: Vec<String>) -> RoleConfig {
    let mut role = RoleConfig::with_command(name, command);
    role.handshake = Handshake::Mcp;
    role.idempotent = vec!["tools/list".into()];
    role.max_agents = 1;
    role
}

async fn tool(swarm: &Swarm, role: &str, name: &str, arguments: Value) -> String {
    let result =
        call_with(swarm, role, "tools/call", json!({"name": name, "arguments": arguments}), CallOptions::default())
            .await
            .expect("the tool ran");
    assert!(!result["isError"].as_bool().unwrap_or(false), "{result}");
    result["content"][0]["text"].as_str().expect("text content").to_owned()
}

#[tokio::test]
async fn the_example_mcp_server_is_pooled_cached_and_cancelled_the_mcp_way() {
    let script = repo().join("examples/agents/mcp_server.py").display().to_string();
    let swarm = start(vec![mcp_role("mcp-py", vec!["python3".into(), script])]).await;
    for _ in 0..3 {
        let tools = call_with(&swarm, "mcp-py", "tools/list", json!({}), CallOptions::default()).await.expect("listed");
        assert_eq!(tools["tools"][0]["name"], "echo");
    }
    assert_eq!(swarm.stats().await.roles[0].calls, 1, "tools/list is cached");
    assert_eq!(tool(&swarm, "mcp-py", "add", json!({"a": 2, "b": 40})).await, "42");
    // A caller that gives up: skep tells the server notifications/cancelled
    // with the server's own request id (1 initialize, 2 tools/list, 3 add).
    let slow = serde_json::value::to_raw_value(&json!({"name": "slow", "arguments": {"ms": 600}})).expect("JSON");
    let gave_up = tokio::time::timeout(
        Duration::from_millis(200),
        swarm.call("mcp-py", "tools/call", Some(&slow), CallOptions::default()),
    )
    .await;
    assert!(gave_up.is_err(), "the caller gave up first");
    assert_eq!(tool(&swarm, "mcp-py", "cancelled", json!({})).await, "[4]");
    // A call past its deadline is -32001, and the server is replaced.
    let hasty = CallOptions { timeout: Some(Duration::from_millis(200)), ..CallOptions::default() };
    let cut = call_with(&swarm, "mcp-py", "tools/call", json!({"name": "slow", "arguments": {"ms": 600}}), hasty).await;
    assert_eq!(cut.expect_err("timed out").code(), -32001);
    assert_eq!(tool(&swarm, "mcp-py", "echo", json!({"text": "still here"})).await, "still here");
    swarm.shutdown().await;
}

/// The published filesystem server from npm, installed from the lock file in
/// tests/mcp-npm (by .ci/run, or here when missing).
fn npm_server() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mcp-npm");
    let entry = dir.join("node_modules/@modelcontextprotocol/server-filesystem/dist/index.js");
    if !entry.exists() {
        let status = std::process::Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .status()
            .expect("npm runs (Node and npm are needed for this test)");
        assert!(status.success(), "npm ci in {} failed", dir.display());
    }
    entry
}

#[tokio::test]
async fn a_published_mcp_server_from_npm_is_pooled() {
    let entry = npm_server();
    let dir = tempfile::Builder::new().prefix("skep-mcp-").tempdir().expect("temp dir");
    std::fs::write(dir.path().join("note.txt"), "pooled").expect("a file to list");
    let files = dir.path().canonicalize().expect("canonical");
    let command = vec!["node".into(), entry.display().to_string(), files.display().to_string()];
    let swarm = start(vec![mcp_role("fs", command)]).await;
    let tools = call_with(&swarm, "fs", "tools/list", json!({}), CallOptions::default()).await.expect("listed");
    let names: Vec<&str> =
        tools["tools"].as_array().expect("tools").iter().filter_map(|t| t["name"].as_str()).collect();
    assert!(names.contains(&"list_directory") && names.contains(&"read_text_file"), "{names:?}");
    let listing = tool(&swarm, "fs", "list_directory", json!({"path": files})).await;
    assert!(listing.contains("note.txt"), "{listing}");
    let text = tool(&swarm, "fs", "read_text_file", json!({"path": files.join("note.txt")})).await;
    assert_eq!(text, "pooled");
    swarm.shutdown().await;
}
