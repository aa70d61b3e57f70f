//! A minimal skep agent in Rust; see docs/agents.md and README.md beside this crate.
//!
//! Methods: `echo` (returns its params), `wordcount {"text": S}` → `{"words": N}`,
//! `initialize` → `{"name": "rust-echo"}`. The bridge does the rest of the agent
//! contract: framing, -32700/-32600/-32601 answers, ignoring notifications,
//! honouring `$/cancelRequest`, concurrent requests, and exiting at EOF.

use serde_json::{Value, json, value::RawValue};
use skep_bridge::{ErrorObjectOwned, RpcModule, Server, ServerConfig, protocol_stdio};
use tokio_util::sync::CancellationToken;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    // First thing: the protocol takes over stdout, and fd 1 now points at stderr,
    // so a stray print from any library lands in the log, not on the wire.
    let (input, output) = protocol_stdio()?;
    eprintln!("rust-echo: started");

    let mut module = RpcModule::new(());
    module.register_method("echo", |params, _ctx, _ext| {
        // Echo the raw JSON text, so numbers come back exactly as sent; absent params echo as null.
        params
            .as_str()
            .map(|raw| RawValue::from_string(raw.to_owned()))
            .transpose()
            .map_err(|e| ErrorObjectOwned::owned(-32602, e.to_string(), None::<()>))
    })?;
    module.register_method("wordcount", |params, _ctx, _ext| {
        let params: Value = params.parse()?;
        let text = params
            .get("text")
            .and_then(Value::as_str)
            .ok_or_else(|| ErrorObjectOwned::owned(-32602, r#"wordcount expects {"text": string}"#, None::<()>))?;
        Ok::<_, ErrorObjectOwned>(json!({ "words": text.split_whitespace().count() }))
    })?;
    // Only sent when the role has `handshake = "initialize"`.
    module.register_method("initialize", |_params, _ctx, _ext| json!({ "name": "rust-echo" }))?;

    // Serves until stdin reaches EOF, lets calls still running finish within a
    // grace period, flushes, and returns: then the process exits with status 0.
    let summary = Server::new(module, ServerConfig::default()).serve(input, output, CancellationToken::new()).await?;
    eprintln!("rust-echo: stdin closed after {} messages, exiting", summary.dispatched);
    Ok(())
}
