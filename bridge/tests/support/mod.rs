//! Shared by the bridge's integration tests: a method table with the
//! specification's example methods, and a harness that serves it over an
//! in-memory duplex and reads raw frames back.
#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::Value;
use skep_bridge::{
    ErrorObjectOwned, Frame, FrameReader, Framing, RpcModule, ServeSummary, Server, ServerConfig, encode_frame,
};
use tokio::io::{AsyncWriteExt, DuplexStream, ReadHalf, WriteHalf};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The longest any single step of a test may wait.
pub const STEP: Duration = Duration::from_secs(10);

/// Methods from the JSON-RPC 2.0 specification's examples, plus a few for
/// cancellation, panics and notification counting.
pub fn spec_module(notified: Arc<AtomicUsize>) -> RpcModule<()> {
    let mut m = RpcModule::new(());
    m.register_method("subtract", |params, _, _| {
        let (minuend, subtrahend): (i64, i64) = if params.is_object() {
            #[derive(serde::Deserialize)]
            struct Named {
                minuend: i64,
                subtrahend: i64,
            }
            let n: Named = params.parse()?;
            (n.minuend, n.subtrahend)
        } else {
            params.parse()?
        };
        Ok::<_, ErrorObjectOwned>(minuend - subtrahend)
    })
    .expect("fresh name");
    m.register_method("sum", |params, _, _| params.parse::<Vec<i64>>().map(|v| v.iter().sum::<i64>()))
        .expect("fresh name");
    m.register_method("get_data", |_, _, _| serde_json::json!(["hello", 5])).expect("fresh name");
    for name in ["update", "notify_hello"] {
        let notified = Arc::clone(&notified);
        m.register_method(name, move |_, _, _| notified.fetch_add(1, Ordering::SeqCst)).expect("fresh name");
    }
    m.register_method("ping", |_, _, _| "pong").expect("fresh name");
    m.register_async_method("sleep", |params, _, _| async move {
        let ms: u64 = params.one()?;
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok::<_, ErrorObjectOwned>(ms)
    })
    .expect("fresh name");
    m.register_method("panic", |_, _, _| -> u32 { panic!("handler panic on purpose") }).expect("fresh name");
    m.register_async_method("panic_async", |_, _, _| async move {
        tokio::task::yield_now().await;
        panic!("async handler panic on purpose") as u32
    })
    .expect("fresh name");
    // The id of the request being handled, as its `Caller` holds it.
    m.register_async_method("caller_id", |_, _, _| async move {
        tokio::task::yield_now().await;
        skep_bridge::Caller::current().map(|c| c.id().get().to_owned())
    })
    .expect("fresh name");
    m
}

/// A server on one end of a duplex, the test on the other.
pub struct Harness {
    pub framing: Framing,
    input: WriteHalf<DuplexStream>,
    output: FrameReader<ReadHalf<DuplexStream>>,
    pub notified: Arc<AtomicUsize>,
    pub shutdown: CancellationToken,
    served: JoinHandle<std::io::Result<ServeSummary>>,
}

impl Harness {
    pub fn start(framing: Framing, config: ServerConfig) -> Harness {
        let notified = Arc::new(AtomicUsize::new(0));
        let server = Server::new(spec_module(Arc::clone(&notified)), config);
        Harness::with_server(framing, server, notified)
    }

    pub fn with_server(framing: Framing, server: Server, notified: Arc<AtomicUsize>) -> Harness {
        let (ours, theirs) = tokio::io::duplex(1 << 20);
        let (their_read, their_write) = tokio::io::split(theirs);
        let (our_read, our_write) = tokio::io::split(ours);
        let shutdown = CancellationToken::new();
        let token = shutdown.clone();
        let served = tokio::spawn(async move { server.serve(their_read, their_write, token).await });
        Harness {
            framing,
            input: our_write,
            output: FrameReader::new(our_read, Some(framing), 64 << 20),
            notified,
            shutdown,
            served,
        }
    }

    /// Sends one payload, framed.
    pub async fn send(&mut self, payload: &str) {
        let mut frame = Vec::new();
        encode_frame(self.framing, payload.as_bytes(), &mut frame);
        self.send_raw(&frame).await;
    }

    /// Sends bytes as they are.
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.input.write_all(bytes).await.expect("server reads");
        self.input.flush().await.expect("server reads");
    }

    /// The next frame from the server, as text.
    pub async fn recv(&mut self) -> String {
        let frame = tokio::time::timeout(STEP, self.output.next()).await.expect("a reply in time");
        match frame.expect("readable") {
            Some(Frame::Message(bytes)) => String::from_utf8(bytes.to_vec()).expect("UTF-8 reply"),
            other => panic!("expected a message, got {other:?}"),
        }
    }

    /// The next frame parsed as JSON.
    pub async fn recv_json(&mut self) -> Value {
        serde_json::from_str(&self.recv().await).expect("JSON reply")
    }

    /// Proves nothing was answered before now: a ping must be the next reply.
    pub async fn expect_silence(&mut self) {
        self.send(r#"{"jsonrpc":"2.0","method":"ping","id":"sync"}"#).await;
        assert_eq!(self.recv().await, r#"{"jsonrpc":"2.0","id":"sync","result":"pong"}"#);
    }

    /// Ends input, reads every reply until the server closes its output, and
    /// returns the summary with those replies.
    pub async fn close_and_collect(mut self) -> (ServeSummary, Vec<String>) {
        self.input.shutdown().await.expect("close input");
        let mut replies = Vec::new();
        loop {
            let frame = tokio::time::timeout(STEP * 10, self.output.next()).await.expect("output ends");
            match frame.expect("readable") {
                Some(Frame::Message(bytes)) => replies.push(String::from_utf8(bytes.to_vec()).expect("UTF-8")),
                Some(other) => panic!("unexpected frame {other:?}"),
                None => break,
            }
        }
        let summary = tokio::time::timeout(STEP, self.served).await.expect("server ends").expect("no panic");
        (summary.expect("served cleanly"), replies)
    }

    /// Ends input and returns the summary after checking nothing else was written.
    pub async fn finish(mut self) -> ServeSummary {
        self.input.shutdown().await.expect("close input");
        let summary = tokio::time::timeout(STEP, self.served).await.expect("server ends").expect("no panic");
        let rest = tokio::time::timeout(STEP, self.output.next()).await.expect("output ends");
        assert!(matches!(rest, Ok(None)), "unexpected output after the last reply: {rest:?}");
        summary.expect("served cleanly")
    }
}
