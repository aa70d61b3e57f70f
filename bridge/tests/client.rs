//! The client against peers that misbehave: a scripted peer on a duplex, a
//! real process killed mid-call, and the bridge's own server under load.

mod support;

use std::collections::HashSet;
use std::time::Duration;

use serde_json::{Value, json};
use skep_bridge::{
    CallError, Client, ClientConfig, ErrorObjectOwned, Frame, FrameReader, Framing, RequestOptions, RpcModule, Server,
    ServerConfig,
};
use support::STEP;
use tokio::io::{AsyncWriteExt, DuplexStream, ReadHalf, WriteHalf};

/// The far end of a client's connection, driven by the test.
struct ScriptedPeer {
    requests: FrameReader<ReadHalf<DuplexStream>>,
    replies: WriteHalf<DuplexStream>,
}

impl ScriptedPeer {
    fn connect(config: ClientConfig) -> (Client, ScriptedPeer) {
        ScriptedPeer::connect_through(config, 1 << 16)
    }

    /// As [`ScriptedPeer::connect`], through a stream that holds `buffer`
    /// bytes before a write must wait for the peer to read.
    fn connect_through(config: ClientConfig, buffer: usize) -> (Client, ScriptedPeer) {
        let (ours, theirs) = tokio::io::duplex(buffer);
        let (their_read, their_write) = tokio::io::split(theirs);
        let (our_read, our_write) = tokio::io::split(ours);
        let framing = config.framing;
        let client = Client::connect(their_read, their_write, config);
        (client, ScriptedPeer { requests: FrameReader::new(our_read, Some(framing), 1 << 20), replies: our_write })
    }

    async fn recv(&mut self) -> Value {
        let frame = tokio::time::timeout(STEP, self.requests.next()).await.expect("a request in time");
        match frame.expect("readable") {
            Some(Frame::Message(bytes)) => serde_json::from_slice(&bytes).expect("JSON request"),
            other => panic!("expected a request, got {other:?}"),
        }
    }

    async fn send(&mut self, line: &str) {
        self.replies.write_all(line.as_bytes()).await.expect("client reads");
        self.replies.write_all(b"\n").await.expect("client reads");
    }
}

fn params(value: Value) -> Box<serde_json::value::RawValue> {
    serde_json::value::to_raw_value(&value).expect("JSON")
}

#[tokio::test(start_paused = true)]
async fn timeout_releases_the_call_cancels_it_and_drops_the_late_reply() {
    let (client, mut peer) = ScriptedPeer::connect(ClientConfig::default());
    let options = RequestOptions { timeout: Some(Duration::from_secs(5)) };
    let one = params(json!([1]));
    let call = client.call_raw("slow", Some(&one), options);
    let (result, request) = tokio::join!(call, peer.recv());
    assert_eq!(request, json!({"jsonrpc": "2.0", "id": 1, "method": "slow", "params": [1]}));
    assert!(matches!(result, Err(CallError::Elapsed(d)) if d == Duration::from_secs(5)), "{result:?}");
    assert_eq!(client.in_flight(), 0);
    assert_eq!(client.abandoned(), 1, "the peer may still be working on it");
    assert_eq!(peer.recv().await, json!({"jsonrpc": "2.0", "method": "$/cancelRequest", "params": {"id": 1}}));

    // The late reply is dropped and counted; the next call gets its own reply.
    peer.send(r#"{"jsonrpc":"2.0","id":1,"result":"late"}"#).await;
    let next = client.call_raw("fast", None, RequestOptions::default());
    let answer = async {
        let request = peer.recv().await;
        peer.send(&format!(r#"{{"jsonrpc":"2.0","id":{},"result":"fresh"}}"#, request["id"])).await;
    };
    let (result, ()) = tokio::join!(next, answer);
    assert_eq!(result.expect("answered").get(), r#""fresh""#);
    let stats = client.stats();
    assert_eq!((stats.timeouts, stats.late_replies, stats.cancelled), (1, 1, 1));
    assert_eq!(client.abandoned(), 0, "the late reply says the peer is done with it");
}

#[tokio::test]
async fn dropping_a_call_cancels_it_on_the_wire() {
    let (client, mut peer) = ScriptedPeer::connect(ClientConfig::default());
    let task = tokio::spawn({
        let client = client.clone();
        async move { client.call_raw("work", None, RequestOptions::default()).await }
    });
    assert_eq!(peer.recv().await["method"], "work");
    task.abort();
    assert!(task.await.expect_err("aborted").is_cancelled());
    assert_eq!(peer.recv().await, json!({"jsonrpc": "2.0", "method": "$/cancelRequest", "params": {"id": 1}}));
    assert_eq!(client.in_flight(), 0);
    assert_eq!(client.stats().cancelled, 1);
}

#[tokio::test]
async fn unknown_ids_and_stray_lines_are_counted_never_fatal() {
    let (client, mut peer) = ScriptedPeer::connect(ClientConfig::default());
    let call = client.call_raw("echo", None, RequestOptions::default());
    let script = async {
        let request = peer.recv().await;
        peer.send("log: warming up the model").await;
        peer.send(r#"{"jsonrpc":"2.0","id":999,"result":"not yours"}"#).await;
        peer.send(r#"{"jsonrpc":"2.0","id":"abc","result":"not yours"}"#).await;
        peer.send(r#"{"unrelated":true}"#).await;
        peer.send(&format!(r#"{{"jsonrpc":"2.0","id":{},"result":{{"ok":1}}}}"#, request["id"])).await;
        // A duplicate of the same reply is late, not delivered twice.
        peer.send(&format!(r#"{{"jsonrpc":"2.0","id":{},"result":{{"ok":2}}}}"#, request["id"])).await;
    };
    let (result, ()) = tokio::join!(call, script);
    assert_eq!(result.expect("answered").get(), r#"{"ok":1}"#);
    let deadline = tokio::time::Instant::now() + STEP;
    while client.stats().late_replies == 0 && tokio::time::Instant::now() < deadline {
        tokio::task::yield_now().await;
    }
    let stats = client.stats();
    assert_eq!((stats.noise, stats.unknown_ids, stats.late_replies), (2, 2, 1), "{stats:?}");
    assert!(client.is_connected());
}

#[tokio::test]
async fn error_replies_are_typed_and_peer_requests_refused() {
    let (client, mut peer) = ScriptedPeer::connect(ClientConfig::default());
    let call = client.call_raw("fail", None, RequestOptions::default());
    let script = async {
        let request = peer.recv().await;
        peer.send(r#"{"jsonrpc":"2.0","id":"srv-1","method":"whoareyou"}"#).await;
        let refusal = peer.recv().await;
        peer.send(&format!(
            r#"{{"jsonrpc":"2.0","id":{},"error":{{"code":-32050,"message":"nope","data":{{"why":"test"}}}}}}"#,
            request["id"]
        ))
        .await;
        refusal
    };
    let (result, refusal) = tokio::join!(call, script);
    assert_eq!(refusal["id"], "srv-1");
    assert_eq!(refusal["error"]["code"], -32601);
    let Err(CallError::Rpc(err)) = result else { panic!("expected an rpc error, got {result:?}") };
    assert_eq!((err.code(), err.message()), (-32050, "nope"));
    assert_eq!(err.data().map(|d| d.get()), Some(r#"{"why":"test"}"#));
}

#[tokio::test]
async fn notifications_reach_the_handler() {
    let (ours, theirs) = tokio::io::duplex(1 << 16);
    let (their_read, their_write) = tokio::io::split(theirs);
    let (_our_read, mut our_write) = tokio::io::split(ours);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let client = Client::builder(ClientConfig::default())
        .on_notification(move |n| drop(tx.send(n)))
        .connect(their_read, their_write);
    our_write
        .write_all(b"{\"jsonrpc\":\"2.0\",\"method\":\"progress\",\"params\":{\"done\":3}}\n")
        .await
        .expect("write");
    let n = tokio::time::timeout(STEP, rx.recv()).await.expect("in time").expect("delivered");
    assert_eq!((n.method.as_str(), n.params.as_deref().map(|p| p.get())), ("progress", Some(r#"{"done":3}"#)));
    assert_eq!(client.stats().notifications, 1);
}

/// Issue 17: a notification naming a call in flight (`$/progress`) goes to
/// that call's caller, before its reply; others go to the client's handler.
#[tokio::test]
async fn notifications_naming_a_call_go_to_its_caller_before_the_reply() {
    let (ours, theirs) = tokio::io::duplex(1 << 16);
    let (their_read, their_write) = tokio::io::split(theirs);
    let (our_read, mut our_write) = tokio::io::split(ours);
    let mut requests = FrameReader::new(our_read, Some(Framing::Newline), 1 << 20);
    let (general_tx, mut general) = tokio::sync::mpsc::unbounded_channel();
    let client = Client::builder(ClientConfig::default())
        .on_notification(move |n| drop(general_tx.send(n)))
        .connect(their_read, their_write);
    let (tx, mut mine) = tokio::sync::mpsc::unbounded_channel();
    let call = tokio::spawn({
        let client = client.clone();
        async move { client.call_raw_notified("work", None, RequestOptions::default(), move |n| drop(tx.send(n))).await }
    });
    let request = tokio::time::timeout(STEP, requests.next()).await.expect("in time").expect("readable");
    assert!(matches!(request, Some(Frame::Message(_))));
    for line in [
        r#"{"jsonrpc":"2.0","method":"$/progress","params":{"id":1,"fraction":0.5,"message":"half"}}"#,
        r#"{"jsonrpc":"2.0","method":"$/progress","params":{"id":99,"fraction":0.1}}"#,
        r#"{"jsonrpc":"2.0","id":1,"result":"done"}"#,
        r#"{"jsonrpc":"2.0","method":"$/progress","params":{"id":1,"message":"after the reply"}}"#,
    ] {
        our_write.write_all(format!("{line}\n").as_bytes()).await.expect("write");
    }
    let result = tokio::time::timeout(STEP, call).await.expect("in time").expect("joined").expect("answered");
    assert_eq!(result.get(), r#""done""#);
    // Delivered on the reader task before the reply: already there.
    let n = mine.try_recv().expect("the call's own notification came first");
    assert_eq!(n.params.as_deref().map(|p| p.get()), Some(r#"{"id":1,"fraction":0.5,"message":"half"}"#));
    assert!(mine.try_recv().is_err(), "only the notification naming this call, and only while in flight");
    let other = tokio::time::timeout(STEP, general.recv()).await.expect("in time").expect("delivered");
    assert_eq!(other.params.as_deref().map(|p| p.get()), Some(r#"{"id":99,"fraction":0.1}"#));
    let late = tokio::time::timeout(STEP, general.recv()).await.expect("in time").expect("delivered");
    assert_eq!(late.params.as_deref().map(|p| p.get()), Some(r#"{"id":1,"message":"after the reply"}"#));
}

#[tokio::test]
async fn a_killed_peer_fails_every_waiting_call_at_once() {
    let mut child = tokio::process::Command::new("sleep")
        .arg("1000")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("sleep is on every machine");
    let (stdin, stdout) = (child.stdin.take().expect("piped"), child.stdout.take().expect("piped"));
    let config = ClientConfig { timeout: Duration::from_secs(3600), ..ClientConfig::default() };
    let client = Client::connect(stdout, stdin, config);
    let calls: Vec<_> = (0..3)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.call_raw("anything", None, RequestOptions::default()).await })
        })
        .collect();
    let deadline = tokio::time::Instant::now() + STEP;
    while client.in_flight() < 3 {
        assert!(tokio::time::Instant::now() < deadline, "calls never registered");
        tokio::task::yield_now().await;
    }
    child.start_kill().expect("kill -9");
    for call in calls {
        let result = tokio::time::timeout(STEP, call).await.expect("failed long before the call timeout");
        assert!(matches!(result.expect("no panic"), Err(CallError::Disconnected)));
    }
    assert!(!client.is_connected());
    assert!(matches!(client.call_raw("after", None, RequestOptions::default()).await, Err(CallError::Disconnected)));
    let status = tokio::time::timeout(STEP, child.wait()).await.expect("reaped").expect("wait");
    assert!(!status.success());
    assert_eq!(client.stats().disconnects, 4);
}

/// A client connected to the bridge's own server in-process.
fn served_client(module: RpcModule<()>, config: ClientConfig) -> Client {
    let (ours, theirs) = tokio::io::duplex(1 << 20);
    let (their_read, their_write) = tokio::io::split(theirs);
    let (our_read, our_write) = tokio::io::split(ours);
    let server = Server::new(module, ServerConfig::default());
    tokio::spawn(async move { server.serve(their_read, their_write, Default::default()).await });
    Client::connect(our_read, our_write, config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_concurrent_calls_are_each_answered_once() {
    for framing in [Framing::Newline, Framing::ContentLength] {
        let mut module = RpcModule::new(());
        module
            .register_async_method("double", |params, _, _| async move {
                let n: u64 = params.one()?;
                tokio::task::yield_now().await;
                Ok::<_, ErrorObjectOwned>(n * 2)
            })
            .expect("fresh name");
        let client = served_client(module, ClientConfig { framing, ..ClientConfig::default() });
        let calls: Vec<_> = (0..10_000u64)
            .map(|n| {
                let client = client.clone();
                tokio::spawn(async move { (n, client.call::<_, u64>("double", [n]).await) })
            })
            .collect();
        let mut seen = HashSet::new();
        for call in calls {
            let (n, result) = tokio::time::timeout(STEP * 6, call).await.expect("in time").expect("no panic");
            assert_eq!(result.expect("answered"), n * 2);
            assert!(seen.insert(n));
        }
        let stats = client.stats();
        assert_eq!((stats.calls, stats.late_replies, stats.unknown_ids, stats.noise), (10_000, 0, 0, 0));
        assert_eq!(client.in_flight(), 0);
    }
}

#[tokio::test]
async fn close_fails_waiting_calls_and_ends_the_peers_input() {
    let (client, mut peer) = ScriptedPeer::connect(ClientConfig::default());
    let call = tokio::spawn({
        let client = client.clone();
        async move { client.call_raw("work", None, RequestOptions::default()).await }
    });
    assert_eq!(peer.recv().await["method"], "work");
    client.close();
    let result = tokio::time::timeout(STEP, call).await.expect("in time").expect("no panic");
    assert!(matches!(result, Err(CallError::Disconnected)), "{result:?}");
    let end = tokio::time::timeout(STEP, peer.requests.next()).await.expect("in time");
    assert!(matches!(end, Ok(None)), "the peer's input should end: {end:?}");
    assert!(!client.is_connected());
}

#[tokio::test(start_paused = true)]
async fn mcp_peers_are_cancelled_the_mcp_way() {
    let config = ClientConfig { cancel: skep_bridge::CancelStyle::Mcp, ..ClientConfig::default() };
    let (client, mut peer) = ScriptedPeer::connect(config);
    let options = RequestOptions { timeout: Some(Duration::from_secs(1)) };
    let (result, request) = tokio::join!(client.call_raw("tools/call", None, options), peer.recv());
    assert_eq!(request["id"], 1);
    assert!(matches!(result, Err(CallError::Elapsed(_))));
    assert_eq!(
        peer.recv().await,
        json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 1, "reason": "the caller gave up"}})
    );
}

/// A frame the stream cannot take at once is written partly by its caller
/// and finished by the writer task, whole and before anything sent later.
#[tokio::test]
async fn a_frame_larger_than_the_stream_goes_whole_and_before_later_ones() {
    let (client, mut peer) = ScriptedPeer::connect_through(ClientConfig::default(), 256);
    let big = params(json!({"blob": "x".repeat(100_000)}));
    let call = client.call_raw("big", Some(&big), RequestOptions::default());
    tokio::pin!(call);
    // The call is alone in flight, so it writes itself: the first 256 bytes.
    assert!(futures::poll!(&mut call).is_pending());
    client.notify("after", Some(&params(json!([2])))).await.expect("queued behind the rest");
    let request = peer.recv().await;
    assert_eq!((request["method"].as_str(), request["id"].as_u64()), (Some("big"), Some(1)));
    assert_eq!(request["params"]["blob"].as_str().map(str::len), Some(100_000));
    assert_eq!(peer.recv().await, json!({"jsonrpc": "2.0", "method": "after", "params": [2]}));
    peer.send(r#"{"jsonrpc":"2.0","id":1,"result":"done"}"#).await;
    assert_eq!(tokio::time::timeout(STEP, call).await.expect("in time").expect("answered").get(), r#""done""#);
}

/// Frames wait for room once `outbound_capacity` are queued, and none is lost.
#[tokio::test]
async fn a_full_queue_makes_senders_wait_for_room() {
    let config = ClientConfig { outbound_capacity: 2, ..ClientConfig::default() };
    let (client, mut peer) = ScriptedPeer::connect_through(config, 64);
    let note = |n: u32| params(json!({"n": n, "pad": "y".repeat(100)}));
    // The peer reads nothing: the stream takes 64 bytes, the writer task
    // holds what it took from the queue, and two more frames fit the queue.
    let mut blocked = None;
    for n in 0..10 {
        let frame = note(n);
        let send = client.notify("note", Some(&frame));
        tokio::pin!(send);
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        if let std::task::Poll::Ready(sent) = futures::poll!(&mut send) {
            sent.expect("room");
        } else {
            blocked = Some(n);
            // Reading frees room, and the waiting frame goes out after the rest.
            let read = async {
                for m in 0..=n {
                    assert_eq!(peer.recv().await["params"]["n"], m);
                }
            };
            let (sent, ()) = tokio::join!(send, read);
            sent.expect("sent");
            break;
        }
    }
    let blocked = blocked.expect("a sender waited while the peer read nothing");
    assert!(blocked <= 5, "at most the queue's two frames and the writer's batch wait; frame {blocked} waited");
}

/// Dropping the last handle still writes what was queued, then ends the
/// peer's input.
#[tokio::test]
async fn the_last_handle_dropped_writes_what_is_queued_then_ends_the_input() {
    let (client, mut peer) = ScriptedPeer::connect_through(ClientConfig::default(), 64);
    let other = client.clone();
    for n in 0..5 {
        client.notify("note", Some(&params(json!({"n": n, "pad": "z".repeat(100)})))).await.expect("queued");
    }
    drop(client);
    other.notify("still open", None).await.expect("a clone keeps the connection");
    drop(other);
    for n in 0..5 {
        assert_eq!(peer.recv().await["params"]["n"], n);
    }
    assert_eq!(peer.recv().await["method"], "still open");
    let end = tokio::time::timeout(STEP, peer.requests.next()).await.expect("in time");
    assert!(matches!(end, Ok(None)), "the peer's input should end: {end:?}");
}
