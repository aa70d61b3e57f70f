//! The server against raw bytes: the JSON-RPC 2.0 specification's examples in
//! both framings, framing edge cases, batches, cancellation, limits and EOF.

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use skep_bridge::{Framing, ServerConfig};
use support::Harness;

/// (request, expected reply or None for no reply), exact bytes. Replies to
/// batches come in input order because the bridge answers a batch as a whole.
const SPEC_EXAMPLES: &[(&str, Option<&str>)] = &[
    // positional parameters
    (
        r#"{"jsonrpc": "2.0", "method": "subtract", "params": [42, 23], "id": 1}"#,
        Some(r#"{"jsonrpc":"2.0","id":1,"result":19}"#),
    ),
    (
        r#"{"jsonrpc": "2.0", "method": "subtract", "params": [23, 42], "id": 2}"#,
        Some(r#"{"jsonrpc":"2.0","id":2,"result":-19}"#),
    ),
    // named parameters
    (
        r#"{"jsonrpc": "2.0", "method": "subtract", "params": {"subtrahend": 23, "minuend": 42}, "id": 3}"#,
        Some(r#"{"jsonrpc":"2.0","id":3,"result":19}"#),
    ),
    (
        r#"{"jsonrpc": "2.0", "method": "subtract", "params": {"minuend": 42, "subtrahend": 23}, "id": 4}"#,
        Some(r#"{"jsonrpc":"2.0","id":4,"result":19}"#),
    ),
    // notifications
    (r#"{"jsonrpc": "2.0", "method": "update", "params": [1,2,3,4,5]}"#, None),
    (r#"{"jsonrpc": "2.0", "method": "foobar"}"#, None),
    // non-existent method
    (
        r#"{"jsonrpc": "2.0", "method": "foobar", "id": "1"}"#,
        Some(r#"{"jsonrpc":"2.0","id":"1","error":{"code":-32601,"message":"Method not found"}}"#),
    ),
    // invalid JSON
    (
        r#"{"jsonrpc": "2.0", "method": "foobar, "params": "bar", "baz]"#,
        Some(
            r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"parse error: invalid JSON: expected `,` or `}` at line 1 column 40"}}"#,
        ),
    ),
    // invalid request object
    (
        r#"{"jsonrpc": "2.0", "method": 1, "params": "bar"}"#,
        Some(
            r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"invalid request: method must be a string"}}"#,
        ),
    ),
    // batch, invalid JSON
    (
        r#"[{"jsonrpc": "2.0", "method": "sum", "params": [1,2,4], "id": "1"},{"jsonrpc": "2.0", "method"]"#,
        Some(
            r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"parse error: invalid JSON: expected `:` at line 1 column 95"}}"#,
        ),
    ),
    // empty array
    ("[]", Some(r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"invalid request: empty batch"}}"#)),
    // invalid batch, not empty
    (
        "[1]",
        Some(
            r#"[{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"invalid request: not a JSON-RPC 2.0 message object"}}]"#,
        ),
    ),
    (
        "[1,2,3]",
        Some(concat!(
            r#"[{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"invalid request: not a JSON-RPC 2.0 message object"}},"#,
            r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"invalid request: not a JSON-RPC 2.0 message object"}},"#,
            r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"invalid request: not a JSON-RPC 2.0 message object"}}]"#
        )),
    ),
    // mixed batch
    (
        r#"[{"jsonrpc": "2.0", "method": "sum", "params": [1,2,4], "id": "1"},{"jsonrpc": "2.0", "method": "notify_hello", "params": [7]},{"jsonrpc": "2.0", "method": "subtract", "params": [42,23], "id": "2"},{"foo": "boo"},{"jsonrpc": "2.0", "method": "foo.get", "params": {"name": "myself"}, "id": "5"},{"jsonrpc": "2.0", "method": "get_data", "id": "9"}]"#,
        Some(concat!(
            r#"[{"jsonrpc":"2.0","id":"1","result":7},"#,
            r#"{"jsonrpc":"2.0","id":"2","result":19},"#,
            r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"invalid request: jsonrpc must be exactly \"2.0\""}},"#,
            r#"{"jsonrpc":"2.0","id":"5","error":{"code":-32601,"message":"Method not found"}},"#,
            r#"{"jsonrpc":"2.0","id":"9","result":["hello",5]}]"#
        )),
    ),
    // batch of notifications only
    (
        r#"[{"jsonrpc": "2.0", "method": "notify_sum", "params": [1,2,4]},{"jsonrpc": "2.0", "method": "notify_hello", "params": [7]}]"#,
        None,
    ),
    // params of the wrong type for the method
    (
        r#"{"jsonrpc":"2.0","method":"sum","params":{"a":1},"id":10}"#,
        Some(
            r#"{"jsonrpc":"2.0","id":10,"error":{"code":-32602,"message":"Invalid params","data":"invalid type: map, expected a sequence at line 1 column 0"}}"#,
        ),
    ),
];

async fn run_spec_examples(framing: Framing) {
    let mut h = Harness::start(framing, ServerConfig::default());
    for (request, reply) in SPEC_EXAMPLES {
        h.send(request).await;
        match reply {
            Some(reply) => assert_eq!(h.recv().await, *reply, "request: {request}"),
            None => h.expect_silence().await,
        }
    }
    // update, notify_hello (in the mixed batch) and notify_hello again.
    assert_eq!(h.notified.load(Ordering::SeqCst), 3);
    let summary = h.finish().await;
    assert_eq!(summary.cut_off, 0);
}

#[tokio::test]
async fn spec_examples_newline() {
    run_spec_examples(Framing::Newline).await;
}

#[tokio::test]
async fn spec_examples_content_length() {
    run_spec_examples(Framing::ContentLength).await;
}

#[tokio::test]
async fn detects_content_length_with_extra_headers_and_split_writes() {
    let mut h = Harness::start(Framing::ContentLength, ServerConfig::default());
    let body = r#"{"jsonrpc":"2.0","method":"subtract","params":[5,3],"id":1}"#;
    let frame = format!(
        "Content-Length: {}\r\nContent-Type: application/vscode-jsonrpc; charset=utf-8\r\n\r\n{body}",
        body.len()
    );
    for byte in frame.as_bytes() {
        h.send_raw(std::slice::from_ref(byte)).await;
    }
    assert_eq!(h.recv().await, r#"{"jsonrpc":"2.0","id":1,"result":2}"#);
    h.finish().await;
}

#[tokio::test]
async fn newline_frames_in_one_write_with_crlf_and_blank_lines() {
    let mut h = Harness::start(Framing::Newline, ServerConfig::default());
    h.send_raw(b"\r\n\n{\"jsonrpc\":\"2.0\",\"method\":\"ping\",\"id\":1}\r\n\n  \n{\"jsonrpc\":\"2.0\",\"method\":\"ping\",\"id\":2}\n").await;
    let mut replies = vec![h.recv().await, h.recv().await];
    replies.sort();
    assert_eq!(
        replies,
        [r#"{"jsonrpc":"2.0","id":1,"result":"pong"}"#, r#"{"jsonrpc":"2.0","id":2,"result":"pong"}"#,]
    );
    h.finish().await;
}

#[tokio::test]
async fn oversize_frame_is_answered_skipped_and_the_connection_lives() {
    let config = ServerConfig { max_frame: 1024, ..ServerConfig::default() };
    for framing in [Framing::Newline, Framing::ContentLength] {
        let mut h = Harness::start(framing, config.clone());
        let big = format!(r#"{{"jsonrpc":"2.0","method":"ping","id":1,"params":["{}"]}}"#, "x".repeat(8 * 1024 * 1024));
        h.send(&big).await;
        let reply = h.recv_json().await;
        assert_eq!(reply["error"]["code"], -32600, "{framing:?}: {reply}");
        assert_eq!(reply["id"], serde_json::Value::Null);
        assert_eq!(reply["error"]["data"]["limit"], 1024);
        h.expect_silence().await;
        h.finish().await;
    }
}

#[tokio::test]
async fn bad_bytes_each_get_a_spec_error() {
    let mut h = Harness::start(Framing::Newline, ServerConfig::default());
    h.send_raw(b"\xff\xfe{}\n").await;
    assert_eq!(h.recv_json().await["error"]["code"], -32700);
    let deep = "[".repeat(100_000) + &"]".repeat(100_000) + "\n";
    h.send_raw(deep.as_bytes()).await;
    assert_eq!(h.recv_json().await[0]["error"]["code"], -32600);
    let deep_params =
        format!(r#"{{"jsonrpc":"2.0","method":"sum","id":1,"params":{}{}}}"#, "[".repeat(100_000), "]".repeat(100_000));
    h.send(&deep_params).await;
    assert_eq!(h.recv_json().await["error"]["code"], -32602);
    h.send(r#"{"jsonrpc":"2.0","method":"subtract","params":[1],"id":2}"#).await;
    assert_eq!(h.recv_json().await["error"]["code"], -32602);
    h.expect_silence().await;
    h.finish().await;
}

#[tokio::test]
async fn batch_over_the_cap_is_one_error() {
    let mut h = Harness::start(Framing::Newline, ServerConfig { max_batch: 3, ..ServerConfig::default() });
    let entry = r#"{"jsonrpc":"2.0","method":"ping","id":1}"#;
    h.send(&format!("[{entry},{entry},{entry},{entry}]")).await;
    assert_eq!(
        h.recv().await,
        r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"invalid request: batch of 4 entries exceeds the limit of 3"}}"#
    );
    h.send(&format!("[{entry},{entry}]")).await;
    assert_eq!(h.recv_json().await.as_array().map(Vec::len), Some(2));
    h.finish().await;
}

#[tokio::test]
async fn a_batch_of_100000_is_rejected_whole() {
    let mut h = Harness::start(Framing::Newline, ServerConfig::default());
    let entries = vec![r#"{"jsonrpc":"2.0","method":"ping","id":1}"#; 100_000].join(",");
    h.send(&format!("[{entries}]")).await;
    assert_eq!(h.recv_json().await["error"]["code"], -32600);
    h.finish().await;
}

#[tokio::test]
async fn a_panicking_handler_is_an_internal_error() {
    let mut h = Harness::start(Framing::Newline, ServerConfig::default());
    h.send(r#"{"jsonrpc":"2.0","method":"panic","id":7}"#).await;
    assert_eq!(
        h.recv().await,
        r#"{"jsonrpc":"2.0","id":7,"error":{"code":-32603,"message":"internal error: the handler panicked"}}"#
    );
    h.send(r#"[{"jsonrpc":"2.0","method":"panic","id":8},{"jsonrpc":"2.0","method":"ping","id":9}]"#).await;
    assert_eq!(
        h.recv().await,
        r#"[{"jsonrpc":"2.0","id":8,"error":{"code":-32603,"message":"internal error: the handler panicked"}},{"jsonrpc":"2.0","id":9,"result":"pong"}]"#
    );
    h.expect_silence().await;
    h.finish().await;
}

#[tokio::test]
async fn cancel_request_answers_minus_32800() {
    let mut h = Harness::start(Framing::Newline, ServerConfig::default());
    h.send(r#"{"jsonrpc":"2.0","method":"sleep","params":[60000],"id":"long"}"#).await;
    h.send(r#"{"jsonrpc":"2.0","method":"$/cancelRequest","params":{"id":"long"}}"#).await;
    assert_eq!(
        h.recv().await,
        r#"{"jsonrpc":"2.0","id":"long","error":{"code":-32800,"message":"request cancelled"}}"#
    );
    // Cancelling an unknown or finished id is a no-op.
    h.send(r#"{"jsonrpc":"2.0","method":"$/cancelRequest","params":{"id":"long"}}"#).await;
    h.expect_silence().await;
    let summary = h.finish().await;
    assert_eq!(summary.cancelled, 1);
}

#[tokio::test]
async fn duplicate_in_flight_id_is_rejected_and_the_first_still_answers() {
    let mut h = Harness::start(Framing::Newline, ServerConfig::default());
    h.send(r#"{"jsonrpc":"2.0","method":"sleep","params":[200],"id":5}"#).await;
    h.send(r#"{"jsonrpc":"2.0","method":"ping","id":5}"#).await;
    assert_eq!(
        h.recv().await,
        r#"{"jsonrpc":"2.0","id":5,"error":{"code":-32600,"message":"invalid request: request id is already in flight on this connection"}}"#
    );
    assert_eq!(h.recv().await, r#"{"jsonrpc":"2.0","id":5,"result":200}"#);
    h.finish().await;
}

#[tokio::test]
async fn over_the_in_flight_bound_is_overloaded() {
    let mut h = Harness::start(Framing::Newline, ServerConfig { max_in_flight: 2, ..ServerConfig::default() });
    for id in 1..=2 {
        h.send(&format!(r#"{{"jsonrpc":"2.0","method":"sleep","params":[60000],"id":{id}}}"#)).await;
    }
    // An asynchronous method needs a slot; synchronous ones are answered inline.
    h.send(r#"{"jsonrpc":"2.0","method":"sleep","params":[0],"id":3}"#).await;
    let reply = h.recv_json().await;
    assert_eq!((reply["id"].as_i64(), reply["error"]["code"].as_i64()), (Some(3), Some(-32004)));
    for id in 1..=2 {
        h.send(&format!(r#"{{"jsonrpc":"2.0","method":"$/cancelRequest","params":{{"id":{id}}}}}"#)).await;
        assert_eq!(h.recv_json().await["error"]["code"], -32800);
    }
    h.finish().await;
}

#[tokio::test(start_paused = true)]
async fn eof_lets_handlers_finish_then_cuts_off_the_rest() {
    let config = ServerConfig { shutdown_grace: Duration::from_secs(2), ..ServerConfig::default() };
    let mut h = Harness::start(Framing::Newline, config);
    h.send(r#"{"jsonrpc":"2.0","method":"sleep","params":[1000],"id":"quick"}"#).await;
    h.send(r#"{"jsonrpc":"2.0","method":"sleep","params":[60000],"id":"slow"}"#).await;
    h.expect_silence().await;
    // Close input: "quick" finishes inside the grace period, "slow" is cut off.
    let summary = h.close_and_collect().await;
    assert_eq!(summary.1, [
        r#"{"jsonrpc":"2.0","id":"quick","result":1000}"#.to_owned(),
        r#"{"jsonrpc":"2.0","id":"slow","error":{"code":-32005,"message":"shutting down: the request did not finish within the grace period"}}"#.to_owned(),
    ]);
    assert_eq!(summary.0.cut_off, 1);
}

#[tokio::test]
async fn eof_mid_frame_ends_cleanly() {
    let mut h = Harness::start(Framing::ContentLength, ServerConfig::default());
    h.send(r#"{"jsonrpc":"2.0","method":"ping","id":1}"#).await;
    assert_eq!(h.recv().await, r#"{"jsonrpc":"2.0","id":1,"result":"pong"}"#);
    h.send_raw(b"Content-Length: 100\r\n\r\n{\"jsonrpc\"").await;
    h.finish().await;
}

#[tokio::test]
async fn shutdown_token_stops_serving() {
    let mut h = Harness::start(Framing::Newline, ServerConfig::default());
    h.expect_silence().await;
    h.shutdown.cancel();
    h.finish().await;
}

/// reliability 15: a caller that stops reading our output. The server stops
/// taking work once its bounded queue and in-flight slots are full, rejects
/// with -32004 what it cannot run, and answers every request exactly once
/// when the caller reads again.
#[tokio::test]
async fn a_caller_that_stops_reading_meets_back_pressure_not_growth() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let config = ServerConfig { max_in_flight: 4, outbound_capacity: 2, ..ServerConfig::default() };
    let notified = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let server = skep_bridge::Server::new(support::spec_module(notified), config);
    let (ours, theirs) = tokio::io::duplex(4096);
    let (their_read, their_write) = tokio::io::split(theirs);
    let (mut our_read, mut our_write) = tokio::io::split(ours);
    let served = tokio::spawn(async move { server.serve(their_read, their_write, Default::default()).await });
    const CALLS: usize = 2000;
    let writer = tokio::spawn(async move {
        for id in 0..CALLS {
            let line = format!("{{\"jsonrpc\":\"2.0\",\"method\":\"sleep\",\"params\":[0],\"id\":{id}}}\n");
            our_write.write_all(line.as_bytes()).await.expect("server reads eventually");
        }
        our_write
    });
    // Not reading: the writer must get stuck, because the server stopped reading.
    let stuck = tokio::time::timeout(std::time::Duration::from_millis(300), async {
        while !writer.is_finished() {
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(stuck.is_err(), "2000 requests went in although nothing was read: the server buffered them");
    // Read again: every request gets exactly one answer.
    let mut seen = vec![0u8; CALLS];
    let (mut answered, mut overloaded, mut buf, mut text) = (0, 0, vec![0u8; 64 * 1024], String::new());
    while answered < CALLS {
        let n =
            tokio::time::timeout(support::STEP, our_read.read(&mut buf)).await.expect("answers flow").expect("read");
        assert!(n > 0, "output ended after {answered} answers");
        text.push_str(std::str::from_utf8(&buf[..n]).expect("UTF-8"));
        while let Some(end) = text.find('\n') {
            let reply: serde_json::Value = serde_json::from_str(&text[..end]).expect("JSON");
            text.drain(..=end);
            seen[reply["id"].as_u64().expect("an id") as usize] += 1;
            overloaded += usize::from(reply["error"]["code"] == -32004);
            answered += 1;
        }
    }
    assert!(seen.iter().all(|&n| n == 1), "every request answered exactly once");
    assert!(overloaded > 0, "some requests met the in-flight bound");
    let mut our_write = writer.await.expect("writer");
    our_write.shutdown().await.expect("close");
    let summary = tokio::time::timeout(support::STEP, served).await.expect("ends").expect("no panic").expect("clean");
    assert_eq!(summary.rejected as usize, overloaded);
}

/// Every id JSON-RPC allows comes back exactly as the caller wrote it,
/// including numbers jsonrpsee's own `Id` cannot hold (reliability 13), on
/// the synchronous path, the async path and inside a batch.
#[tokio::test]
async fn every_id_the_spec_allows_is_echoed_as_written() {
    let mut h = Harness::start(Framing::Newline, ServerConfig::default());
    let ids = ["-1", "1.5", "-0", "1e3", "18446744073709551616", "-9223372036854775809", "0", "\"x\"", "null"];
    for id in ids {
        h.send(&format!(r#"{{"jsonrpc":"2.0","method":"ping","id":{id}}}"#)).await;
        assert_eq!(h.recv().await, format!(r#"{{"jsonrpc":"2.0","id":{id},"result":"pong"}}"#));
        h.send(&format!(r#"{{"jsonrpc":"2.0","method":"sleep","params":[1],"id":{id}}}"#)).await;
        assert_eq!(h.recv().await, format!(r#"{{"jsonrpc":"2.0","id":{id},"result":1}}"#));
    }
    h.send(r#"[{"jsonrpc":"2.0","method":"ping","id":-7},{"jsonrpc":"2.0","method":"sleep","params":[1],"id":2.25}]"#)
        .await;
    assert_eq!(h.recv().await, r#"[{"jsonrpc":"2.0","id":-7,"result":"pong"},{"jsonrpc":"2.0","id":2.25,"result":1}]"#);
    // What the spec refuses stays refused, with the reason.
    h.send(r#"{"jsonrpc":"2.0","method":"ping","id":[1]}"#).await;
    assert_eq!(
        h.recv().await,
        r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"invalid request: id must be a string, a number or null"}}"#
    );
    h.expect_silence().await;
    h.finish().await;
}

/// Async methods take the server's direct path (no second parse by
/// jsonrpsee): a panic there is still -32603 for that request alone, and the
/// handler still sees its own caller, under whatever id the caller wrote.
#[tokio::test]
async fn async_methods_keep_panics_and_their_caller() {
    let mut h = Harness::start(Framing::Newline, ServerConfig::default());
    h.send(r#"{"jsonrpc":"2.0","method":"panic_async","id":"p"}"#).await;
    assert_eq!(
        h.recv().await,
        r#"{"jsonrpc":"2.0","id":"p","error":{"code":-32603,"message":"internal error: the handler panicked"}}"#
    );
    for id in ["7", "\"a\\\"b\"", "-1.50", "null"] {
        h.send(&format!(r#"{{"jsonrpc":"2.0","method":"caller_id","id":{id}}}"#)).await;
        let expected = serde_json::to_string(id).expect("a string serializes");
        assert_eq!(h.recv().await, format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{expected}}}"#));
    }
    h.send(r#"{"jsonrpc":"2.0","method":"sleep","params":["x"],"id":3}"#).await;
    assert_eq!(h.recv_json().await["error"]["code"], -32602);
    h.expect_silence().await;
    h.finish().await;
}
