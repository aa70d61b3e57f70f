//! A swarm that is an orchestrator: its `remote = true` roles (and roles
//! known only from heartbeats) reach the cluster its config names. Every
//! program that starts a swarm to call roles (`skep serve`, the daemon,
//! `skep run --no-daemon`, the Node package) starts it here, so none of them
//! can forget the cluster.

use skep_swarm::{Config, Swarm, SwarmError};

use crate::client::RemoteClient;
use crate::error::ClusterError;

/// Why an orchestrator's swarm did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The cluster in `[cluster]` could not be joined (a wrong token says so here).
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    /// The swarm's own roles could not start.
    #[error(transparent)]
    Swarm(#[from] SwarmError),
}

/// Starts `config`'s swarm, connected to its `[cluster]` when it has one;
/// `name` is the NATS connection's name, as the server's monitoring shows it.
///
/// The cluster is joined before any agent starts: wrong credentials fail the
/// start at once rather than every remote call later.
pub async fn start_swarm(config: Config, name: &str) -> Result<Swarm, StartError> {
    let remote = match &config.cluster {
        Some(cluster) => Some(RemoteClient::connect(cluster, name).await?),
        None => None,
    };
    let swarm = Swarm::start(config).await?;
    if let Some(remote) = remote {
        swarm.set_remote(std::sync::Arc::new(remote));
    }
    Ok(swarm)
}
