//! What can go wrong connecting to a cluster and serving on it.

/// Why a worker or an orchestrator could not join its cluster.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// The server refused our credentials: retrying would hide a configuration error.
    #[error(
        "the NATS server at {url} refused our credentials (authorization violation): check [cluster] token, user/password or creds, or SKEP_NATS_TOKEN / SKEP_NATS_USER / SKEP_NATS_PASSWORD / SKEP_NATS_CREDS"
    )]
    Refused { url: String },
    /// The server could not be reached or the connection could not be set up.
    #[error("cannot connect to the NATS server at {url}")]
    Connect {
        url: String,
        #[source]
        source: async_nats::ConnectError,
    },
    /// The creds file could not be read.
    #[error("cannot read the creds file {path}")]
    Creds {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// A role cannot be served over NATS under its name.
    #[error("role {role} cannot be served over NATS: {reason}")]
    Role { role: String, reason: String },
    /// Subscribing to a subject failed.
    #[error("cannot subscribe to {subject}")]
    Subscribe {
        subject: String,
        #[source]
        source: async_nats::SubscribeError,
    },
}
