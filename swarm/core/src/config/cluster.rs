//! `[cluster]`: where the NATS server of a cluster of workers is, which
//! cluster on it, and how to prove who we are. The values are plain data:
//! `skep-cluster` connects with them, the core only checks them.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use super::ConfigError;
use super::load::Ctx;
use super::raw::{Opt, RawCluster, RawTls};

/// `[cluster]`: the NATS server workers and orchestrators meet on (docs/cluster.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// The server's URL (`nats://host:4222`, `tls://host:4222`), or several separated by commas.
    pub nats: String,
    /// The cluster's name: the second token of every subject, so clusters can share a server.
    pub name: String,
    /// A token the server expects.
    pub token: Option<Secret>,
    /// A user the server expects, with its password.
    pub user: Option<String>,
    /// The user's password.
    pub password: Option<Secret>,
    /// A `.creds` file (JWT and nkey seed), resolved against the config's directory.
    pub creds: Option<PathBuf>,
    /// How often a worker publishes its heartbeat.
    pub heartbeat: Duration,
    /// TLS options, passed through to the NATS client.
    pub tls: TlsConfig,
}

/// `[cluster.tls]`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsConfig {
    /// Refuse a server that does not speak TLS.
    pub required: bool,
    /// A PEM file of the certificate authorities to trust (besides the system's).
    pub ca: Option<PathBuf>,
    /// A PEM client certificate, for servers that verify clients.
    pub cert: Option<PathBuf>,
    /// The client certificate's PEM private key.
    pub key: Option<PathBuf>,
}

/// A credential: compared and cloned like a string, never shown by `Debug`
/// or `Display`, so no log line or error message can carry it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a credential.
    pub fn new(value: String) -> Secret {
        Secret(value)
    }

    /// The credential itself, for the one place that hands it to the client.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// The heartbeat interval when the config names none.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(1);

/// The cluster name when the config names none.
pub const DEFAULT_CLUSTER_NAME: &str = "default";

impl ClusterConfig {
    /// A cluster on `nats` with every other key at its default.
    pub fn new(nats: &str) -> ClusterConfig {
        ClusterConfig {
            nats: nats.to_owned(),
            name: DEFAULT_CLUSTER_NAME.to_owned(),
            token: None,
            user: None,
            password: None,
            creds: None,
            heartbeat: DEFAULT_HEARTBEAT,
            tls: TlsConfig::default(),
        }
    }
}

/// Whether `name` may be a subject token: NATS splits subjects at dots and
/// gives `*` and `>` meaning, so a cluster or role name must hold neither.
pub fn is_subject_token(name: &str) -> bool {
    super::is_valid_name(name) && !name.contains('.')
}

pub(super) fn build(cx: &Ctx<'_>, raw: Spanned<RawCluster>, base: &Path) -> Result<ClusterConfig, ConfigError> {
    let header = raw.span();
    let raw = raw.into_inner();
    let nats = match raw.nats {
        Some(url) if !url.get_ref().trim().is_empty() => url.into_inner(),
        Some(url) => return Err(cx.at(url.span(), "cluster.nats", empty("a URL such as \"nats://127.0.0.1:4222\""))),
        None => {
            let problem = "expected nats = \"nats://HOST:4222\" (the server the cluster meets on), found nothing";
            return Err(cx.at(header, "cluster.nats", problem.to_owned()));
        }
    };
    let name = match raw.name {
        None => DEFAULT_CLUSTER_NAME.to_owned(),
        Some(n) if is_subject_token(n.get_ref()) => n.into_inner(),
        Some(n) => {
            let problem = format!("expected 1 to 64 characters from [A-Za-z0-9_-] (no dots), found {:?}", n.get_ref());
            return Err(cx.at(n.span(), "cluster.name", problem));
        }
    };
    if let (Some(password), None) = (&raw.password, &raw.user) {
        let problem = "a password needs its user: add user = \"NAME\"".to_owned();
        return Err(cx.at(password.span(), "cluster.password", problem));
    }
    let path = |v: Opt<String>, key: &str| match v {
        Some(p) if p.get_ref().is_empty() => Err(cx.at(p.span(), key, empty("a file path"))),
        p => Ok(p.map(|p| base.join(p.into_inner()))),
    };
    let tls = match raw.tls.map(Spanned::into_inner) {
        None => TlsConfig::default(),
        Some(RawTls { required, ca, cert, key }) => {
            if let (Some(c), None) | (None, Some(c)) = (&cert, &key) {
                let problem = "a client certificate needs both cert and key".to_owned();
                return Err(cx.at(c.span(), "cluster.tls", problem));
            }
            TlsConfig {
                required: required.is_some_and(Spanned::into_inner),
                ca: path(ca, "cluster.tls.ca")?,
                cert: path(cert, "cluster.tls.cert")?,
                key: path(key, "cluster.tls.key")?,
            }
        }
    };
    let heartbeat = match raw.heartbeat {
        None => DEFAULT_HEARTBEAT,
        Some(h) if (Duration::from_millis(50)..=Duration::from_secs(60)).contains(&h.get_ref().0) => h.into_inner().0,
        Some(h) => {
            let problem = format!("expected a duration from 50ms to 60s, found {} ms", h.get_ref().0.as_millis());
            return Err(cx.at(h.span(), "cluster.heartbeat", problem));
        }
    };
    Ok(ClusterConfig {
        nats,
        name,
        token: raw.token.map(|t| Secret::new(t.into_inner())),
        user: raw.user.map(Spanned::into_inner),
        password: raw.password.map(|p| Secret::new(p.into_inner())),
        creds: path(raw.creds, "cluster.creds")?,
        heartbeat,
        tls,
    })
}

fn empty(expected: &str) -> String {
    format!("expected {expected}, found an empty string")
}
