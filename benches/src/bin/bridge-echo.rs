//! The bench's bridge child: one method, `echo`, returns its params as-is
//! (raw, never decoded). Serves stdin/stdout on a current-thread runtime.

use serde_json::value::RawValue;
use skep_bridge::{RpcModule, Server, ServerConfig, protocol_stdio};
use tokio_util::sync::CancellationToken;

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let (input, output) = protocol_stdio()?;
    let mut module = RpcModule::new(());
    module
        .register_method("echo", |params, _, _| {
            params.as_str().map(|raw| RawValue::from_string(raw.to_owned()).expect("params arrive as valid JSON"))
        })
        .expect("`echo` is registered once");
    Server::new(module, ServerConfig::default()).serve(input, output, CancellationToken::new()).await?;
    Ok(())
}
