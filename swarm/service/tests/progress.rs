//! Issue 17: `swarm/call` relays its agent's `$/progress` to the caller, on
//! the wire, naming the caller's own request id, before the answer.

use std::time::Duration;

use skep_bridge::{Frame, FrameReader, Framing, Server, ServerConfig};
use skep_service::rpc_module;
use skep_testkit::{agent_role, start};
use tokio::io::AsyncWriteExt;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

const STEP: Duration = Duration::from_secs(20);

#[tokio::test]
async fn swarm_call_relays_progress_to_its_caller_with_the_callers_id() {
    let swarm = start(vec![agent_role("worker", &[])]).await;
    let shutdown = CancellationToken::new();
    let server = Server::new(rpc_module(swarm.clone(), shutdown.clone()), ServerConfig::default());
    let (ours, theirs) = tokio::io::duplex(1 << 20);
    let (their_read, their_write) = tokio::io::split(theirs);
    let (our_read, mut our_write) = tokio::io::split(ours);
    let served = tokio::spawn({
        let shutdown = shutdown.clone();
        async move { server.serve(their_read, their_write, shutdown).await }
    });
    let mut frames = FrameReader::new(our_read, Some(Framing::Newline), 1 << 20);
    let request = r#"{"jsonrpc":"2.0","id":"p-7","method":"swarm/call","params":{"role":"worker","method":"progress","params":{"steps":2}}}"#;
    our_write.write_all(format!("{request}\n").as_bytes()).await.expect("written");

    let mut lines = Vec::new();
    while lines.len() < 3 {
        match timeout(STEP, frames.next()).await.expect("in time").expect("readable") {
            Some(Frame::Message(bytes)) => lines.push(String::from_utf8(bytes.to_vec()).expect("UTF-8")),
            other => panic!("unexpected frame {other:?}"),
        }
    }
    assert_eq!(
        lines,
        [
            r#"{"jsonrpc":"2.0","method":"$/progress","params":{"id":"p-7","fraction":0.5,"message":"step 1"}}"#,
            r#"{"jsonrpc":"2.0","method":"$/progress","params":{"id":"p-7","fraction":1.0,"message":"step 2"}}"#,
            r#"{"jsonrpc":"2.0","id":"p-7","result":2}"#,
        ]
    );
    shutdown.cancel();
    drop(our_write);
    timeout(STEP, served).await.expect("served in time").expect("joined").expect("served");
    swarm.shutdown().await;
}
