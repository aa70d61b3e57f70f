//! What skep's integration tests share, so each test file says only what it
//! tests: where the misbehaving test agent is, a swarm started and called
//! within a bound, and checks on processes that poll against a deadline.
//!
//! # Layout
//! - `lib.rs`: the test agent, bounded swarms and calls.
//! - `procs.rs`: checks on processes and process trees, polled against a deadline.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;
use skep_swarm::{CallOptions, Config, RoleConfig, Swarm, SwarmError};
use tokio::time::timeout;

mod procs;

pub use procs::{GONE_LIMIT, eventually, gone, pids_in, tree_command, wait_for_file, wait_gone};

/// The longest any single step of a test may take; past it the test fails
/// instead of hanging.
pub const STEP: Duration = Duration::from_secs(30);

/// The test agent binary of `skep-swarm` (`swarm/core/src/bin/skep-test-agent.rs`).
///
/// Cargo hands a package's binaries only to that package's own tests
/// (`CARGO_BIN_EXE_*`), so it is looked for beside the running test's
/// executable, in the same target directory: `cargo test --workspace`, and
/// `cargo test -p skep-swarm`, build it before any test runs.
pub fn test_agent() -> String {
    let exe = std::env::current_exe().expect("the test's own path");
    let profile_dir = exe.parent().and_then(std::path::Path::parent).expect("target/<profile>/deps/<test>");
    let agent: PathBuf = profile_dir.join("skep-test-agent");
    assert!(
        agent.exists(),
        "{} is missing: `cargo test --workspace` builds it, or `cargo build -p skep-swarm --bin skep-test-agent`",
        agent.display()
    );
    agent.to_string_lossy().into_owned()
}

/// A role running the test agent with these flags.
pub fn agent_role(name: &str, flags: &[&str]) -> RoleConfig {
    let mut command = vec![test_agent()];
    command.extend(flags.iter().map(|f| (*f).to_owned()));
    RoleConfig::with_command(name, command)
}

/// A config of these roles and nothing else.
pub fn config(roles: Vec<RoleConfig>) -> Config {
    Config { roles: roles.into_iter().map(|r| (r.name.clone(), r)).collect::<BTreeMap<_, _>>(), ..Config::default() }
}

/// A swarm of these roles, started within [`STEP`].
pub async fn start(roles: Vec<RoleConfig>) -> Swarm {
    timeout(STEP, Swarm::start(config(roles))).await.expect("the swarm started in time").expect("the swarm started")
}

/// One call with default options, answered within [`STEP`].
pub async fn call(swarm: &Swarm, role: &str, method: &str, params: Value) -> Result<Value, SwarmError> {
    call_with(swarm, role, method, params, CallOptions::default()).await
}

/// One call, answered within [`STEP`]; the result parsed back into a value.
pub async fn call_with(
    swarm: &Swarm,
    role: &str,
    method: &str,
    params: Value,
    options: CallOptions,
) -> Result<Value, SwarmError> {
    let params = serde_json::value::to_raw_value(&params).expect("params serialize");
    let result = timeout(STEP, swarm.call(role, method, Some(&params), options)).await.expect("answered in time")?;
    Ok(serde_json::from_str(result.get()).expect("the result is JSON"))
}
