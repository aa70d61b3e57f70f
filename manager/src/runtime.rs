//! The async runtime every command runs on.

use anyhow::Context;

/// The runtime every command runs on: one thread.
///
/// skep's own work is I/O between pipes; the CPU time goes to the agent
/// processes. On a 2-core machine, `skep demo` measured 45–80k warm calls/s on
/// one thread against ~38k/s with two workers, which spend their time waking
/// each other up and compete with the agents for the cores.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start the async runtime")
}
