//! Roles known only from heartbeats: a role this swarm's config does not
//! name, but that a live worker advertises, is callable over the cluster
//! with every default (the role's `timeout`, no idempotent methods, so no
//! retry after a lost call and no cache). It has no pool here, hence no
//! breaker or stats of its own; the worker's heartbeats show its calls.

use serde_json::value::RawValue;

use crate::error::SwarmError;
use crate::remote::advertised_role;
use crate::swarm::{CallOptions, Swarm};

impl Swarm {
    /// Calls `role` on a worker that advertises it, or gives back `unknown`
    /// (the local lookup's error) when none does.
    pub(crate) async fn call_advertised(
        &self,
        role: &str,
        method: &str,
        params: Option<&RawValue>,
        options: CallOptions,
        unknown: SwarmError,
    ) -> Result<Box<RawValue>, SwarmError> {
        let Some(remote) = self.remote().filter(|remote| remote.serves(role)) else { return Err(unknown) };
        let config = advertised_role(role);
        remote.call(&config, method, params, options.timeout.unwrap_or(config.timeout)).await
    }
}
