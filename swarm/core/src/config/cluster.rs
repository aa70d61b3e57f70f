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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::{Config, Protocol};

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, "skep.toml", Path::new("/srv/proj"))
    }

    fn fails(text: &str, fragments: &[&str]) {
        let err = parse(text).expect_err("config should be rejected").to_string();
        for fragment in fragments {
            assert!(err.contains(fragment), "{err:?} lacks {fragment:?}");
        }
    }

    const REMOTE: &str = "[roles.r]\nremote = true\n";

    #[test]
    fn a_cluster_parses_to_exact_values_and_hides_its_secrets() {
        let text = r#"
[cluster]
nats = "nats://10.0.0.5:4222"
name = "farm"
token = "t0ken"
user = "alice"
password = "pw"
creds = "keys/skep.creds"
heartbeat = "250ms"
tls = { required = true, ca = "ca.pem", cert = "c.pem", key = "k.pem" }
[roles.r]
remote = true
timeout = "2s"
idempotent = ["lookup"]
"#;
        let config = parse(text).expect("parses");
        let cluster = config.cluster.clone().expect("a cluster");
        assert_eq!(
            cluster,
            ClusterConfig {
                nats: "nats://10.0.0.5:4222".into(),
                name: "farm".into(),
                token: Some(Secret::new("t0ken".into())),
                user: Some("alice".into()),
                password: Some(Secret::new("pw".into())),
                creds: Some("/srv/proj/keys/skep.creds".into()),
                heartbeat: Duration::from_millis(250),
                tls: TlsConfig {
                    required: true,
                    ca: Some("/srv/proj/ca.pem".into()),
                    cert: Some("/srv/proj/c.pem".into()),
                    key: Some("/srv/proj/k.pem".into()),
                },
            }
        );
        let shown = format!("{config:?}");
        assert!(!shown.contains("t0ken") && !shown.contains("\"pw\""), "{shown}");
        let role = &config.roles["r"];
        assert_eq!((role.protocol.clone(), role.min_warm, role.command.len()), (Protocol::Remote, 0, 0));
        assert_eq!(role.timeout, Duration::from_secs(2));
    }

    #[test]
    fn a_cluster_has_defaults_and_is_optional() {
        let cluster = parse(&format!("[cluster]\nnats = \"nats://h:4222\"\n{REMOTE}")).expect("parses").cluster;
        assert_eq!(cluster, Some(ClusterConfig::new("nats://h:4222")));
        assert_eq!(parse("[roles.r]\ncommand = [\"a\"]\n").expect("parses").cluster, None);
    }

    #[test]
    fn wrong_cluster_and_remote_keys_are_refused_with_their_key() {
        fails(REMOTE, &["cluster", "role r is remote = true", "[cluster]"]);
        fails(&format!("[cluster]\nname = \"x\"\n{REMOTE}"), &["cluster.nats", "found nothing"]);
        fails(&format!("[cluster]\nnats = \"\"\n{REMOTE}"), &["cluster.nats", "empty string"]);
        fails(&format!("[cluster]\nnats = \"n\"\nname = \"a.b\"\n{REMOTE}"), &["cluster.name", "no dots"]);
        fails(&format!("[cluster]\nnats = \"n\"\npassword = \"p\"\n{REMOTE}"), &["cluster.password", "user"]);
        fails(&format!("[cluster]\nnats = \"n\"\nheartbeat = \"5ms\"\n{REMOTE}"), &["cluster.heartbeat", "50ms"]);
        fails(
            &format!("[cluster]\nnats = \"n\"\ntls = {{ cert = \"c\" }}\n{REMOTE}"),
            &["cluster.tls", "cert and key"],
        );
        fails(&format!("[cluster]\nnats = \"n\"\nport = 1\n{REMOTE}"), &["port"]);
        let cluster = "[cluster]\nnats = \"n\"\n";
        fails(&format!("{cluster}{REMOTE}command = [\"a\"]\n"), &["roles.r.command", "leave command out"]);
        fails(&format!("{cluster}{REMOTE}protocol = \"command\"\n"), &["roles.r.protocol", "leave protocol out"]);
        fails(&format!("{cluster}{REMOTE}min_warm = 1\n"), &["roles.r.min_warm", "from 0 to 0"]);
        fails(&format!("{cluster}[roles.\"a.b\"]\nremote = true\n"), &["no dots"]);
    }

    #[test]
    fn spill_is_remote_or_none_on_a_local_pool_of_a_cluster_config() {
        let cluster = "[cluster]\nnats = \"n\"\n";
        let local = "[roles.l]\ncommand = [\"a\"]\n";
        let config = parse(&format!("{cluster}{local}spill = \"remote\"\n")).expect("parses");
        assert!(config.roles["l"].spill_remote);
        assert_eq!(config.roles["l"].protocol, Protocol::JsonRpc);
        assert!(!parse(&format!("{cluster}{local}spill = \"none\"\n")).expect("parses").roles["l"].spill_remote);
        assert!(!parse(&format!("{cluster}{local}")).expect("parses").roles["l"].spill_remote);
        fails(&format!("{local}spill = \"remote\"\n"), &["role l is spill = \"remote\"", "[cluster]"]);
        fails(&format!("{cluster}{local}spill = \"far\"\n"), &["roles.l.spill", "\"remote\" or \"none\""]);
        fails(&format!("{cluster}{REMOTE}spill = \"remote\"\n"), &["roles.r.spill", "no local pool"]);
        fails(
            &format!("{cluster}{local}protocol = \"command\"\nspill = \"remote\"\n"),
            &["roles.l.spill", "warm pools"],
        );
        fails(&format!("{cluster}[roles.\"a.b\"]\ncommand = [\"a\"]\nspill = \"remote\"\n"), &["no dots"]);
    }
}
