//! A peer for the comparison: jsonrpsee's own method dispatch on a pipe, as
//! a user of jsonrpsee would write it (jsonrpsee has no stdio server). One
//! raw `echo` method; each request line goes to `Methods::raw_json_request`
//! in its own task, and one writer task owns stdout. Current-thread runtime,
//! pipes polled by the runtime, as `bridge-echo` does.

use std::os::fd::AsFd;

use jsonrpsee::{Methods, RpcModule};
use serde_json::value::RawValue;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::unix::pipe;
use tokio::sync::mpsc;

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let input = pipe::Receiver::from_owned_fd(std::io::stdin().as_fd().try_clone_to_owned()?)?;
    let mut output = pipe::Sender::from_owned_fd(std::io::stdout().as_fd().try_clone_to_owned()?)?;
    let mut module = RpcModule::new(());
    module
        .register_method("echo", |params, _, _| {
            params.as_str().map(|raw| RawValue::from_string(raw.to_owned()).expect("params arrive as valid JSON"))
        })
        .expect("`echo` is registered once");
    let methods: Methods = module.into();

    let (replies, mut outbox) = mpsc::unbounded_channel::<Box<RawValue>>();
    let writer = tokio::spawn(async move {
        let mut buf = Vec::with_capacity(64 * 1024);
        while let Some(reply) = outbox.recv().await {
            buf.extend_from_slice(reply.get().as_bytes());
            buf.push(b'\n');
            // Whatever else is ready goes in the same write.
            while let Ok(more) = outbox.try_recv() {
                buf.extend_from_slice(more.get().as_bytes());
                buf.push(b'\n');
            }
            output.write_all(&buf).await?;
            buf.clear();
        }
        std::io::Result::Ok(())
    });
    let mut lines = BufReader::new(input).lines();
    while let Some(line) = lines.next_line().await? {
        let (methods, replies) = (methods.clone(), replies.clone());
        tokio::spawn(async move {
            if let Ok((reply, _subscriptions)) = methods.raw_json_request(&line, 1).await {
                let _ = replies.send(reply);
            }
        });
    }
    drop(replies);
    writer.await.expect("the writer task does not panic")
}
