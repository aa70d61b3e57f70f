//! The seam between a swarm and its remote roles: a role declared
//! `remote = true` has no agents here, and its calls go to whatever
//! [`RemoteCalls`] the swarm was given (`skep-cluster`'s NATS client). The
//! core stays free of any transport; everything else about the call (the
//! breaker, the idempotent cache, stats, events) is the same as a local one.

use std::fmt::Debug;
use std::time::Duration;

use futures::future::BoxFuture;
use serde_json::value::RawValue;

use crate::config::RoleConfig;
use crate::error::SwarmError;

/// Carries one call of a remote role to an agent somewhere else.
pub trait RemoteCalls: Send + Sync + Debug {
    /// Calls `method` of `role` and waits at most `timeout` for the answer.
    /// Dropping the future must tell the far side to cancel.
    fn call<'a>(
        &'a self,
        role: &'a RoleConfig,
        method: &'a str,
        params: Option<&'a RawValue>,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Box<RawValue>, SwarmError>>;
}
