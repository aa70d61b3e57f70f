//! The bridge's example sidecar: a JSON-RPC server on stdin/stdout.
//!
//! ```sh
//! echo '{"jsonrpc":"2.0","id":1,"method":"echo","params":["hi"]}' | cargo run -q -p skep-bridge --example echo
//! ```
//! Methods: `echo` (returns its params), `sleep {"ms": N}`. Either framing
//! works; it is detected from the first bytes. Logs go to stderr (`SKEP_LOG`).

use std::time::Duration;

use serde_json::value::RawValue;
use skep_bridge::{ErrorObjectOwned, RpcModule, Server, ServerConfig, protocol_stdio};
use tokio_util::sync::CancellationToken;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let (input, output) = protocol_stdio()?;
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("SKEP_LOG").unwrap_or_else(|_| "warn".into()))
        .init();
    let mut module = RpcModule::new(());
    module.register_method("echo", |params, _, _| {
        // Absent params echo as null.
        params.as_str().map(|raw| RawValue::from_string(raw.to_owned()).expect("params arrive as valid JSON"))
    })?;
    module.register_async_method("sleep", |params, _, _| async move {
        #[derive(serde::Deserialize)]
        struct Sleep {
            ms: u64,
        }
        let Sleep { ms } = params.parse()?;
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok::<_, ErrorObjectOwned>(serde_json::json!({ "slept": ms }))
    })?;
    let summary = Server::new(module, ServerConfig::default()).serve(input, output, CancellationToken::new()).await?;
    tracing::info!(?summary, "input ended");
    Ok(())
}
