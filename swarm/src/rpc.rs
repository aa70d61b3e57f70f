//! The sidecar's methods, defined once on a jsonrpsee `RpcModule`:
//! `initialize`, `swarm/call`, `swarm/roles`, `swarm/agents`, `swarm/stats`,
//! `events/subscribe` / `events/unsubscribe`, and `shutdown`. Documented in
//! docs/protocol.md.

use std::time::Duration;

use serde::Deserialize;
use serde_json::json;
use serde_json::value::RawValue;
use skep_bridge::{ErrorObjectOwned, RpcModule, SubscriptionResult};
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use crate::swarm::{CallOptions, Swarm};

/// What the sidecar's methods share: the swarm and the sidecar's shutdown switch.
#[derive(Debug)]
pub struct Sidecar {
    swarm: Swarm,
    shutdown: CancellationToken,
}

/// `swarm/call` params.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CallParams {
    role: String,
    method: String,
    #[serde(default)]
    params: Option<Box<RawValue>>,
    timeout_ms: Option<u64>,
}

/// The sidecar's method table over `swarm`; the `shutdown` method cancels `shutdown`.
pub fn rpc_module(swarm: Swarm, shutdown: CancellationToken) -> RpcModule<Sidecar> {
    let mut module = RpcModule::new(Sidecar { swarm, shutdown });
    module
        .register_method("initialize", |_, ctx, _| {
            let roles: Vec<String> = ctx.swarm.roles().into_iter().map(|r| r.name).collect();
            json!({ "name": "skep", "version": env!("CARGO_PKG_VERSION"), "roles": roles })
        })
        .expect("fresh name");
    module
        .register_async_method("swarm/call", |params, ctx, _| async move {
            let call: CallParams = params.parse()?;
            let options = CallOptions { timeout: call.timeout_ms.map(Duration::from_millis) };
            ctx.swarm
                .call(&call.role, &call.method, call.params.as_deref(), options)
                .await
                .map_err(|e| e.to_error_object())
        })
        .expect("fresh name");
    module.register_method("swarm/roles", |_, ctx, _| ctx.swarm.roles()).expect("fresh name");
    module
        .register_async_method("swarm/agents", |_, ctx, _| async move { ctx.swarm.agents().await })
        .expect("fresh name");
    module
        .register_async_method(
            "swarm/stats",
            |_, ctx, _| async move { Ok::<_, ErrorObjectOwned>(ctx.swarm.stats().await) },
        )
        .expect("fresh name");
    module
        .register_method("shutdown", |_, ctx, _| {
            ctx.shutdown.cancel();
        })
        .expect("fresh name");
    module
        .register_subscription(
            "events/subscribe",
            "events/event",
            "events/unsubscribe",
            |_, pending, ctx, _| async move {
                let mut events = ctx.swarm.subscribe();
                let sink = pending.accept().await?;
                loop {
                    tokio::select! {
                        event = events.recv() => match event {
                            Ok(event) => sink.send(serde_json::value::to_raw_value(&event)?).await?,
                            Err(RecvError::Lagged(missed)) => {
                                let notice = json!({ "type": "lagged", "missed": missed });
                                sink.send(serde_json::value::to_raw_value(&notice)?).await?;
                            }
                            Err(RecvError::Closed) => break,
                        },
                        () = sink.closed() => break,
                    }
                }
                SubscriptionResult::Ok(())
            },
        )
        .expect("fresh name");
    module
}
