//! Connecting to the cluster's NATS server: the URL, the credentials (from
//! `[cluster]`, or the environment, which wins so secrets can stay out of
//! files) and TLS, all passed through to async-nats. Credentials never reach
//! a log line: `Secret` hides them and URLs are shown without their user part.

use async_nats::{Client, ConnectErrorKind, ConnectOptions};
use skep_swarm::{ClusterConfig, Secret};

use crate::error::ClusterError;

/// The variable whose token replaces `[cluster] token`.
pub const ENV_TOKEN: &str = "SKEP_NATS_TOKEN";
/// The variable whose user replaces `[cluster] user`.
pub const ENV_USER: &str = "SKEP_NATS_USER";
/// The variable whose password replaces `[cluster] password`.
pub const ENV_PASSWORD: &str = "SKEP_NATS_PASSWORD";
/// The variable whose creds file replaces `[cluster] creds`.
pub const ENV_CREDS: &str = "SKEP_NATS_CREDS";

/// Connects to `config`'s server as `name` (shown in the server's monitoring).
///
/// A refused credential is [`ClusterError::Refused`] at once: the first
/// connection is not retried, so a wrong token is an error, not a silent loop.
/// Once connected, the client reconnects on its own after a server restart.
pub async fn connect(config: &ClusterConfig, name: &str) -> Result<Client, ClusterError> {
    let url = redact_url(&config.nats);
    let env = |var: &str| std::env::var(var).ok().filter(|v| !v.is_empty());
    let mut options = ConnectOptions::new().name(name);
    if let Some(token) = env(ENV_TOKEN).map(Secret::new).or_else(|| config.token.clone()) {
        options = options.token(token.expose().to_owned());
    }
    let user = env(ENV_USER).or_else(|| config.user.clone());
    let password = env(ENV_PASSWORD).map(Secret::new).or_else(|| config.password.clone());
    if let Some(user) = user {
        let password = password.map(|p| p.expose().to_owned()).unwrap_or_default();
        options = options.user_and_password(user, password);
    }
    if let Some(creds) = env(ENV_CREDS).map(std::path::PathBuf::from).or_else(|| config.creds.clone()) {
        options = options
            .credentials_file(&creds)
            .await
            .map_err(|source| ClusterError::Creds { path: creds.display().to_string(), source })?;
    }
    let tls = &config.tls;
    if tls.required {
        options = options.require_tls(true);
    }
    if let Some(ca) = &tls.ca {
        options = options.add_root_certificates(ca.clone());
    }
    if let (Some(cert), Some(key)) = (&tls.cert, &tls.key) {
        options = options.add_client_certificate(cert.clone(), key.clone());
    }
    match options.connect(config.nats.as_str()).await {
        Ok(client) => Ok(client),
        Err(e) if matches!(e.kind(), ConnectErrorKind::AuthorizationViolation | ConnectErrorKind::Authentication) => {
            Err(ClusterError::Refused { url })
        }
        Err(source) => Err(ClusterError::Connect { url, source }),
    }
}

/// `urls` (comma-separated) with any `user:password@` taken out, for messages.
pub fn redact_url(urls: &str) -> String {
    let redact = |url: &str| {
        let url = url.trim();
        let (scheme, rest) = url.split_once("://").map_or(("", url), |(s, r)| (s, r));
        let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
        match scheme {
            "" => host.to_owned(),
            scheme => format!("{scheme}://{host}"),
        }
    };
    urls.split(',').map(redact).collect::<Vec<_>>().join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_credentials_in_messages() {
        assert_eq!(redact_url("nats://127.0.0.1:4222"), "nats://127.0.0.1:4222");
        assert_eq!(redact_url("nats://alice:s3cret@a:4222, tls://tok@b:4222"), "nats://a:4222,tls://b:4222");
        assert_eq!(redact_url("host:4222"), "host:4222");
    }
}
