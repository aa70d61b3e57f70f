//! The sidecar's method table served by the bridge and driven by the bridge's
//! client, in-process, with real agents behind it.

use std::time::Duration;

use serde_json::value::RawValue;
use serde_json::{Value, json};
use skep_bridge::{CallError, Client, ClientBuilder, ClientConfig, RequestOptions, Server, ServerConfig};
use skep_service::rpc_module;
use skep_swarm::{Config, RoleConfig, Swarm};
use skep_testkit::{agent_role, eventually, gone, start, test_agent};
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

const STEP: Duration = Duration::from_secs(20);

async fn sidecar() -> (Client, Swarm, CancellationToken) {
    let mut role = RoleConfig::with_command("solo", vec![test_agent()]);
    role.max_agents = 1;
    let config = Config { roles: [("solo".to_owned(), role)].into(), ..Config::default() };
    let swarm = timeout(STEP, Swarm::start(config)).await.expect("in time").expect("started");
    let shutdown = CancellationToken::new();
    let client = connect(&swarm, &shutdown, Client::builder(ClientConfig::default()));
    (client, swarm, shutdown)
}

/// One more connection to the sidecar's method table over `swarm`, in memory.
fn connect(swarm: &Swarm, shutdown: &CancellationToken, client: ClientBuilder) -> Client {
    let server = Server::new(rpc_module(swarm.clone(), shutdown.clone()), ServerConfig::default());
    let (ours, theirs) = tokio::io::duplex(1 << 20);
    let (their_read, their_write) = tokio::io::split(theirs);
    let (our_read, our_write) = tokio::io::split(ours);
    let token = shutdown.clone();
    tokio::spawn(async move { server.serve(their_read, their_write, token).await });
    client.connect(our_read, our_write)
}

async fn call(client: &Client, method: &str, params: Value) -> Result<Value, CallError> {
    timeout(STEP, client.call(method, params)).await.expect("answered in time")
}

#[tokio::test]
async fn calls_pass_through_and_errors_say_what_to_do() {
    let (client, swarm, _) = sidecar().await;
    let init = call(&client, "initialize", json!({})).await.expect("initialize");
    assert_eq!((init["name"].as_str(), init["roles"].clone()), (Some("skep"), json!(["solo"])));
    let echoed =
        call(&client, "swarm/call", json!({"role": "solo", "method": "echo", "params": {"b": [1, 2], "a": "é"}}))
            .await
            .expect("echo");
    assert_eq!(echoed, json!({"b": [1, 2], "a": "é"}));
    let Err(CallError::Rpc(err)) = call(&client, "swarm/call", json!({"role": "nope", "method": "echo"})).await else {
        panic!("an unknown role must fail");
    };
    assert_eq!(err.code(), -32602);
    assert_eq!(err.data().map(|d| d.get()), Some(r#"{"knownRoles":["solo"]}"#));
    let Err(CallError::Rpc(err)) = call(&client, "swarm/call", json!({"role": "solo"})).await else {
        panic!("missing method must fail");
    };
    assert_eq!(err.code(), -32602);
    let Err(CallError::Rpc(err)) =
        call(&client, "swarm/call", json!({"role": "solo", "method": "fail", "params": {"code": 7, "message": "no"}}))
            .await
    else {
        panic!("the agent's error must come back");
    };
    assert_eq!((err.code(), err.message()), (7, "no"));
    let agents = call(&client, "swarm/agents", json!([])).await.expect("agents");
    assert_eq!(agents.as_array().map(Vec::len), Some(1));
    let stats = call(&client, "swarm/stats", json!([])).await.expect("stats");
    assert_eq!(stats["roles"][0]["calls"], 2);
    assert_eq!(stats["roles"][0]["errors"], json!({"7": 1}));
    swarm.shutdown().await;
}

/// 0 for a deadline or a count means nothing useful: it is refused naming
/// the field, and no agent sees the call.
#[tokio::test]
async fn zero_deadlines_and_counts_are_refused_by_name() {
    let (client, swarm, _) = sidecar().await;
    let refusals = [
        ("swarm/call", json!({"role": "solo", "method": "echo", "params": [1], "timeoutMs": 0}), "timeoutMs"),
        ("swarm/fanout", json!({"role": "solo", "method": "echo", "params": [[1]], "maxParallel": 0}), "maxParallel"),
        ("swarm/fanout", json!({"role": "solo", "method": "echo", "params": [[1]], "timeoutMs": 0}), "timeoutMs"),
        ("swarm/race", json!({"calls": [{"role": "solo", "method": "echo"}], "timeoutMs": 0}), "timeoutMs"),
        ("swarm/broadcast", json!({"role": "solo", "method": "echo", "timeoutMs": 0}), "timeoutMs"),
    ];
    for (method, params, field) in refusals {
        let Err(CallError::Rpc(err)) = call(&client, method, params).await else {
            panic!("{method} with {field} 0 must be refused");
        };
        assert_eq!(
            (err.code(), err.message()),
            (-32602, format!("invalid params: {field} must be at least 1; leave it out for the default").as_str())
        );
    }
    let stats = call(&client, "swarm/stats", json!([])).await.expect("stats");
    assert_eq!(stats["roles"][0]["calls"], 0, "no refused call reached an agent: {stats}");
    let ok = call(&client, "swarm/call", json!({"role": "solo", "method": "echo", "params": [1], "timeoutMs": 5000}));
    assert_eq!(ok.await.expect("a deadline of 1 or more is taken"), json!([1]));
    swarm.shutdown().await;
}

#[tokio::test]
async fn a_cancelled_call_is_cancelled_on_the_agent_with_its_own_id() {
    let (client, swarm, _) = sidecar().await;
    let options = RequestOptions { timeout: Some(Duration::from_millis(300)) };
    let params = serde_json::value::to_raw_value(&json!({"role": "solo", "method": "sleep", "params": {"ms": 1000}}))
        .expect("JSON");
    let cut = timeout(STEP, client.call_raw("swarm/call", Some(&params), options)).await.expect("in time");
    assert!(matches!(cut, Err(CallError::Elapsed(_))), "{cut:?}");
    // The one agent finishes its sleep, then reads the cancellation: the id it
    // was given on the orchestrator → agent hop is 1, not the caller's id.
    let cancelled =
        call(&client, "swarm/call", json!({"role": "solo", "method": "cancelled"})).await.expect("cancelled");
    assert_eq!(cancelled, json!([1]));
    swarm.shutdown().await;
}

#[tokio::test]
async fn events_stream_to_subscribers_and_shutdown_is_a_method() {
    let (client, swarm, shutdown) = sidecar().await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    // A second connection with a notification handler, as a watcher would have.
    let watcher =
        connect(&swarm, &shutdown, Client::builder(ClientConfig::default()).on_notification(move |n| drop(tx.send(n))));
    let _subscription: Value =
        timeout(STEP, watcher.call("events/subscribe", json!([]))).await.expect("in time").expect("subscribed");
    call(&client, "swarm/call", json!({"role": "solo", "method": "echo", "params": [1]})).await.expect("echo");
    let mut kinds = Vec::new();
    while !kinds.contains(&"callFinished".to_owned()) {
        let n = timeout(STEP, rx.recv()).await.expect("an event in time").expect("open");
        assert_eq!(n.method, "events/event");
        let params: Value = serde_json::from_str(n.params.expect("params").get()).expect("JSON");
        kinds.push(params["result"]["type"].as_str().expect("typed").to_owned());
    }
    assert!(kinds.contains(&"callStarted".to_owned()), "{kinds:?}");
    call(&client, "shutdown", json!([])).await.expect("shutdown answered");
    assert!(shutdown.is_cancelled());
    swarm.shutdown().await;
}

#[tokio::test]
async fn coordination_methods_over_the_wire() {
    let (client, swarm, _) = sidecar().await;
    let fanned =
        call(&client, "swarm/fanout", json!({"role": "solo", "method": "echo", "params": [[1], [2], {"x": 3}]}))
            .await
            .expect("fanout");
    assert_eq!(fanned, json!([{"ok": [1]}, {"ok": [2]}, {"ok": {"x": 3}}]));
    let raced = call(
        &client,
        "swarm/race",
        json!({"calls": [{"role": "nope", "method": "x"}, {"role": "solo", "method": "echo", "params": ["won"]}]}),
    )
    .await
    .expect("race");
    assert_eq!(raced, json!({"index": 1, "result": ["won"]}));
    let sent = call(&client, "swarm/broadcast", json!({"role": "solo", "method": "echo", "params": [7]}))
        .await
        .expect("broadcast");
    assert_eq!(sent, json!([{"agent": "solo/1", "ok": [7]}]));
    let Err(CallError::Rpc(err)) = call(&client, "swarm/route", json!({"text": "anything"})).await else {
        panic!("no role has route patterns");
    };
    assert_eq!((err.code(), err.data().map(|d| d.get())), (-32602, Some(r#"{"routes":{"solo":[]}}"#)));
    let Err(CallError::Rpc(err)) = call(&client, "swarm/call", json!({"role": "auto", "method": "echo"})).await else {
        panic!("auto needs text");
    };
    assert!(err.message().contains("needs \"text\""), "{}", err.message());
    swarm.shutdown().await;
}

#[tokio::test]
async fn workflow_run_streams_progress_then_the_record() {
    let (client, swarm, shutdown) = sidecar().await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let runner =
        connect(&swarm, &shutdown, Client::builder(ClientConfig::default()).on_notification(move |n| drop(tx.send(n))));
    let state = tempfile::Builder::new().prefix("skep-sidecar-wf-").tempdir().expect("temp dir");
    let toml = "[[steps]]\nid = \"hello\"\nrole = \"solo\"\nmethod = \"echo\"\nparams = [\"hi\"]\ncache = false\n\
                [[steps]]\nid = \"after\"\nneeds = [\"hello\"]\nrun = [\"echo\", \"${steps.hello.result/0}\"]\ncache = false\n";
    let params = json!({ "toml": toml, "baseDir": state.path().to_str().expect("utf-8 path") });
    let _id: Value = timeout(STEP, runner.call("workflow/run", params)).await.expect("in time").expect("accepted");
    let mut events = Vec::new();
    let record = loop {
        let n = timeout(STEP, rx.recv()).await.expect("progress in time").expect("open");
        assert_eq!(n.method, "workflow/progress");
        let params: Value = serde_json::from_str(n.params.expect("params").get()).expect("JSON");
        let result = params["result"].clone();
        if result["event"] == "result" {
            break result["record"].clone();
        }
        events.push(result["event"].as_str().expect("named").to_owned());
    };
    assert_eq!(events.iter().filter(|e| *e == "finished").count(), 2, "{events:?}");
    assert_eq!(events.last().map(String::as_str), Some("done"));
    assert_eq!(record["ok"], true, "{record}");
    assert_eq!(record["steps"][1]["id"], "after");
    let refused =
        call(&client, "workflow/run", json!({ "toml": "[[steps]]\nid = \"x\"\nneeds = [\"y\"]\nrun = [\"true\"]\n" }))
            .await
            .expect_err("an invalid workflow is refused");
    assert!(refused.to_string().contains("step x needs \"y\", but there is no step \"y\""), "{refused}");
    swarm.shutdown().await;
}

/// The idempotent cache's data-integrity fix (issue 19) as it was found:
/// `swarm/call` through this table, params written by hand, against an agent
/// that echoes its params' exact text.
#[tokio::test]
async fn through_the_sidecar_each_caller_gets_its_own_params_back() {
    let mut role = agent_role("cached", &[]);
    role.max_agents = 1;
    role.idempotent = vec!["echo-raw".into()];
    let swarm = start(vec![role]).await;
    let shutdown = CancellationToken::new();
    let client = connect(&swarm, &shutdown, Client::builder(ClientConfig::default()));
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
    eventually("the agents to exit", STEP, || pids.iter().all(|p| gone(*p))).await;
}
