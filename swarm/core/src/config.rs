//! Loading and validation of `skep.toml`, which declares the agent roles and how each is pooled.
//! Every error names the file, the 1-based line and the dotted key: a pool that refuses to start
//! should say exactly which line to fix.

use std::{
    collections::BTreeMap,
    fmt,
    ops::Range,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::{Deserialize, Deserializer, de};
use toml::Spanned;

use crate::breaker::BreakerConfig;
use toml::de::{DeTable, DeValue};

const DURATION: &str = r#"a duration such as "250ms", "30s" or "5m""#;
const ARGV: &str = r#"a non-empty argv array such as ["python3", "agent.py"]"#;
const VAR: &str = "an environment variable name matching [A-Za-z_][A-Za-z0-9_]*";
const HANDSHAKE: &str = r#""none", "initialize" or "mcp""#;
const PROTOCOL: &str = r#""jsonrpc" or "command""#;
const BYTES: &str = r#"a size such as "512KiB", "64MiB" or "1GiB""#;
const NAME: &str = "a role name of 1 to 64 characters from [A-Za-z0-9._-]";

/// A loaded, validated skep.toml.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The roles, sorted by name (a `BTreeMap`), so start-up and listings are deterministic.
    pub roles: BTreeMap<String, RoleConfig>,
    /// The file the config was loaded from; `None` when parsed from text.
    pub source: Option<PathBuf>,
    /// `[observe] socket`: where to serve the observe socket, resolved against the config's directory.
    pub observe: Option<PathBuf>,
}

/// How an agent proves it is ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Handshake {
    /// The agent is ready as soon as it is spawned.
    #[default]
    None,
    /// The agent must answer an `initialize` call first.
    Initialize,
    /// The MCP stdio handshake: `initialize`, then `notifications/initialized`.
    Mcp,
}

/// How skep talks to a role's processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    /// Warm agents speaking JSON-RPC 2.0 on stdin/stdout.
    #[default]
    JsonRpc,
    /// A fresh process per call: params on stdin, `{exitCode, stdout, stderr}` back.
    Command,
}

/// One role: how to start its agents and how to pool them.
#[derive(Debug, Clone, PartialEq)]
pub struct RoleConfig {
    /// The role's name, the key under `[roles]`.
    pub name: String,
    /// The argv to spawn; never passed through a shell.
    pub command: Vec<String>,
    /// Working directory, already resolved against the config file's directory.
    pub cwd: Option<PathBuf>,
    /// Variables added to the agent's otherwise cleared environment.
    pub env: BTreeMap<String, String>,
    /// Variables copied from skep's own environment.
    pub env_passthrough: Vec<String>,
    /// How an agent proves it is ready.
    pub handshake: Handshake,
    /// Agents started at start-up and kept warm.
    pub min_warm: usize,
    /// Upper bound on live agents.
    pub max_agents: usize,
    /// Calls in flight per agent.
    pub concurrency: usize,
    /// Per-call timeout.
    pub timeout: Duration,
    /// Time an agent has to become ready.
    pub startup_timeout: Duration,
    /// Time a call may wait for a free agent.
    pub queue_timeout: Duration,
    /// Calls after which an agent is recycled.
    pub max_calls: u64,
    /// Idle time after which the pool shrinks back to `min_warm`.
    pub idle_timeout: Duration,
    /// Warm JSON-RPC agents, or a process per call.
    pub protocol: Protocol,
    /// Run `command` through `/bin/sh -c` (explicit opt-in; never otherwise).
    pub shell: bool,
    /// Methods whose successful results are cached.
    pub idempotent: Vec<String>,
    /// How long a cached result stays fresh.
    pub cache_ttl: Duration,
    /// Most cached results.
    pub cache_capacity: usize,
    /// Most bytes of cached results.
    pub cache_bytes: usize,
    /// Patterns (regular expressions) that route free text to this role.
    pub route: Vec<String>,
    /// The role's circuit breaker.
    pub breaker: BreakerConfig,
}

/// Why a config could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying failure.
        #[source]
        source: std::io::Error,
    },
    /// The text is not valid TOML or not a valid skep config.
    #[error("{origin}:{line}: {message}")]
    Invalid {
        /// The file name, or `<inline>`.
        origin: String,
        /// 1-based line of the offending key or value.
        line: usize,
        /// The dotted key and what was expected.
        message: String,
    },
}

type Opt<T> = Option<Spanned<T>>;
type Res<T> = Result<T, ConfigError>;

// Every field is optional and spanned so that defaults and range checks live in `build_role`,
// where each error can point at its line; adding a key is one field here and one line there.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    roles: Opt<BTreeMap<Spanned<String>, RawRole>>,
    observe: Opt<RawObserve>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawObserve {
    socket: Opt<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRole {
    command: Opt<Vec<String>>,
    cwd: Opt<String>,
    env: Opt<BTreeMap<Spanned<String>, String>>,
    env_passthrough: Opt<Vec<Spanned<String>>>,
    handshake: Opt<String>,
    min_warm: Opt<u64>,
    max_agents: Opt<u64>,
    concurrency: Opt<u64>,
    timeout: Opt<Dur>,
    startup_timeout: Opt<Dur>,
    queue_timeout: Opt<Dur>,
    max_calls: Opt<u64>,
    idle_timeout: Opt<Dur>,
    protocol: Opt<String>,
    shell: Opt<bool>,
    idempotent: Opt<Vec<String>>,
    cache_ttl: Opt<Dur>,
    cache_capacity: Opt<u64>,
    cache_bytes: Opt<Size>,
    route: Opt<Vec<Spanned<String>>>,
    breaker: Opt<RawBreaker>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBreaker {
    window: Option<u64>,
    min_calls: Option<u64>,
    failure_rate: Option<f64>,
    slow_call: Option<Dur>,
    slow_rate: Option<f64>,
    open_for: Option<Dur>,
    open_for_max: Option<Dur>,
    half_open_probes: Option<u64>,
    probe_timeout: Option<Dur>,
}

impl RawBreaker {
    fn build(self) -> BreakerConfig {
        let d = BreakerConfig::default();
        let count = |v: Option<u64>, default: usize| v.map_or(default, |v| usize::try_from(v).unwrap_or(usize::MAX));
        let dur = |v: Option<Dur>, default| v.map_or(default, |v| v.0);
        BreakerConfig {
            window: count(self.window, d.window),
            min_calls: count(self.min_calls, d.min_calls),
            failure_rate: self.failure_rate.unwrap_or(d.failure_rate),
            slow_call: dur(self.slow_call, d.slow_call),
            slow_rate: self.slow_rate.unwrap_or(d.slow_rate),
            open_for: dur(self.open_for, d.open_for),
            open_for_max: dur(self.open_for_max, d.open_for_max),
            half_open_probes: count(self.half_open_probes, d.half_open_probes),
            probe_timeout: dur(self.probe_timeout, d.probe_timeout),
        }
    }
}

// Parsed during deserialization so that `timeout = 30` and `timeout = "30"` get the same hint.
struct Dur(Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = Dur;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(DURATION)
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Dur, E> {
                match parse_duration(text) {
                    Some(d) if !d.is_zero() => Ok(Dur(d)),
                    Some(_) => Err(E::custom(format!("expected a duration above zero, found {text:?}"))),
                    None => Err(E::custom(format!("expected {DURATION}, found {text:?}"))),
                }
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

// A byte size: parsed during deserialization, like `Dur`.
struct Size(u64);

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = Size;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(BYTES)
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Size, E> {
                parse_size(text).map(Size).ok_or_else(|| E::custom(format!("expected {BYTES}, found {text:?}")))
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

impl Config {
    /// Reads and validates a file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        // An absolute base keeps resolved cwds valid if the process later changes directory.
        let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let base = absolute.parent().unwrap_or(Path::new("."));
        let mut config = Config::parse(&text, &path.display().to_string(), base)?;
        config.source = Some(path.to_path_buf());
        Ok(config)
    }

    /// Parses and validates text; `origin` names it in errors (a path or `"<inline>"`); relative cwd resolves against `base_dir`.
    pub fn parse(text: &str, origin: &str, base_dir: &Path) -> Result<Config, ConfigError> {
        let cx = Ctx { origin, text };
        let tree = DeTable::parse(text).map_err(|e| cx.syntax(&e))?;
        let raw = RawConfig::deserialize(toml::de::Deserializer::from(tree)).map_err(|e| cx.serde(&e))?;
        let (at, raw_roles) = raw.roles.map_or((0, BTreeMap::new()), |r| (r.span().start, r.into_inner()));
        if raw_roles.is_empty() {
            let message = "roles: expected at least one table such as [roles.worker], found none";
            return Err(cx.at(at, message.to_owned()));
        }
        let roles = (raw_roles.into_iter())
            .map(|(n, raw)| build_role(&cx, &n, raw, base_dir).map(|r| (r.name.clone(), r)))
            .collect::<Res<_>>()?;
        let source = None;
        let observe = match raw.observe.and_then(|o| o.into_inner().socket) {
            Some(socket) if socket.get_ref().is_empty() => {
                let message = "observe.socket: expected a socket path such as \"skep.sock\", found an empty string";
                return Err(cx.at(socket.span().start, message.to_owned()));
            }
            Some(socket) => Some(base_dir.join(socket.into_inner())),
            None => None,
        };
        Ok(Config { roles, source, observe })
    }
}

impl RoleConfig {
    /// A role with every default, for the given name and argv (used for built-in roles).
    pub fn with_command(name: &str, command: Vec<String>) -> RoleConfig {
        RoleConfig {
            name: name.to_owned(),
            command,
            cwd: None,
            env: BTreeMap::new(),
            env_passthrough: ["PATH", "HOME", "LANG"].map(String::from).to_vec(),
            handshake: Handshake::None,
            min_warm: 1,
            max_agents: 4,
            concurrency: 1,
            timeout: Duration::from_secs(30),
            startup_timeout: Duration::from_secs(10),
            queue_timeout: Duration::from_secs(5),
            max_calls: 10_000,
            idle_timeout: Duration::from_secs(300),
            protocol: Protocol::JsonRpc,
            shell: false,
            idempotent: Vec::new(),
            cache_ttl: Duration::from_secs(600),
            cache_capacity: 10_000,
            cache_bytes: 64 * 1024 * 1024,
            route: Vec::new(),
            breaker: BreakerConfig::default(),
        }
    }

    /// The argv actually spawned: `command`, or `/bin/sh -c` with it joined
    /// when the role opted into a shell.
    pub fn argv(&self) -> Vec<String> {
        match self.shell {
            false => self.command.clone(),
            true => vec!["/bin/sh".to_owned(), "-c".to_owned(), self.command.join(" ")],
        }
    }
}

/// Whether `name` is a valid role (or step/agent) name: [A-Za-z0-9._-]{1,64}.
pub fn is_valid_name(name: &str) -> bool {
    let allowed = |b: u8| b.is_ascii_alphanumeric() || b"._-".contains(&b);
    (1..=64).contains(&name.len()) && name.bytes().all(allowed)
}

fn is_env_name(name: &str) -> bool {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    !name.starts_with(|c: char| c.is_ascii_digit()) && !name.is_empty() && name.bytes().all(word)
}

/// Parses "512", "512B", "64KiB", "64MiB", "1GiB" (also KB, MB, GB in powers of 1000).
pub fn parse_size(text: &str) -> Option<u64> {
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let scale: u64 = match unit {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        _ => return None,
    };
    if number.is_empty() || number.len() > 19 {
        return None;
    }
    number.parse::<u64>().ok()?.checked_mul(scale)
}

/// Parses "250ms", "30s", "1.5s", "5m", "1h".
pub fn parse_duration(text: &str) -> Option<Duration> {
    let (number, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit() && c != '.')?);
    let unit_ns: u128 = match unit {
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        _ => return None,
    };
    let (whole, frac) = number.split_once('.').unwrap_or((number, "0"));
    // Integer arithmetic keeps "0.1s" exactly 100ms; the length caps keep u128 from overflowing.
    if !(1..=20).contains(&whole.len()) || !(1..=20).contains(&frac.len()) || frac.contains('.') {
        return None;
    }
    let frac_ns = frac.parse::<u128>().ok()? * unit_ns / 10u128.pow(frac.len() as u32);
    let ns = whole.parse::<u128>().ok()? * unit_ns + frac_ns;
    let secs = u64::try_from(ns / 1_000_000_000).ok()?;
    Some(Duration::new(secs, (ns % 1_000_000_000) as u32))
}

fn build_role(cx: &Ctx<'_>, name: &Spanned<String>, r: RawRole, base: &Path) -> Res<RoleConfig> {
    let key = format!("roles.{}", quote(name.get_ref()));
    let f = Fields { cx, key };
    if !is_valid_name(name.get_ref()) {
        let message = format!("{}: expected {NAME}, found {:?}", f.key, name.get_ref());
        return Err(cx.at(name.span().start, message));
    }
    let d = RoleConfig::with_command(name.get_ref(), Vec::new());
    let command = match r.command {
        Some(c) if c.get_ref().first().is_some_and(|p| !p.is_empty()) => c.into_inner(),
        Some(c) => return Err(f.bad(c.span(), "command", ARGV, &format!("{:?}", c.get_ref()))),
        None => return Err(f.bad(name.span(), "command", ARGV, "nothing")),
    };
    let cwd = match r.cwd {
        Some(c) if c.get_ref().is_empty() => return Err(f.bad(c.span(), "cwd", "a path", "\"\"")),
        c => c.map(|c| base.join(c.into_inner())),
    };
    let env_map = r.env.map(Spanned::into_inner).unwrap_or_default();
    let env = env_map.into_iter().map(|(k, v)| Ok((f.var(k, "env")?, v))).collect::<Res<_>>()?;
    let env_passthrough = match r.env_passthrough.map(Spanned::into_inner) {
        Some(names) => names.into_iter().map(|k| f.var(k, "env_passthrough")).collect::<Res<_>>()?,
        None => d.env_passthrough,
    };
    let handshake = match r.handshake {
        None => Handshake::None,
        Some(h) => match h.get_ref().as_str() {
            "none" => Handshake::None,
            "initialize" => Handshake::Initialize,
            "mcp" => Handshake::Mcp,
            other => return Err(f.bad(h.span(), "handshake", HANDSHAKE, &format!("{other:?}"))),
        },
    };
    let min_warm = f.int(&r.min_warm, "min_warm", d.min_warm as u64, 0, 4096)? as usize;
    let max_agents = f.int(&r.max_agents, "max_agents", min_warm.max(4) as u64, 1, 4096)? as usize;
    if min_warm > max_agents {
        let span = r.min_warm.as_ref().map_or(name.span(), Spanned::span);
        let expected = format!("at most max_agents ({max_agents})");
        return Err(f.bad(span, "min_warm", &expected, &min_warm.to_string()));
    }
    let dur = |v: Opt<Dur>, default| v.map_or(default, |v| v.into_inner().0);
    let protocol = match r.protocol {
        None => Protocol::JsonRpc,
        Some(p) => match p.get_ref().as_str() {
            "jsonrpc" => Protocol::JsonRpc,
            "command" => Protocol::Command,
            other => return Err(f.bad(p.span(), "protocol", PROTOCOL, &format!("{other:?}"))),
        },
    };
    let route = match r.route.map(Spanned::into_inner) {
        None => Vec::new(),
        Some(patterns) => patterns.into_iter().map(|p| f.pattern(p)).collect::<Res<_>>()?,
    };
    // An MCP server's tool list is fixed for its life: cache it unless told otherwise.
    let idempotent = match (r.idempotent, handshake) {
        (Some(methods), _) => methods.into_inner(),
        (None, Handshake::Mcp) => vec!["tools/list".to_owned()],
        (None, _) => Vec::new(),
    };
    let breaker = match r.breaker {
        None => d.breaker.clone(),
        Some(raw) => {
            let span = raw.span();
            let breaker = raw.into_inner().build();
            if let Err(rule) = breaker.validate() {
                return Err(cx.at(span.start, format!("{}.breaker: {rule}", f.key)));
            }
            breaker
        }
    };
    let cache_bytes = match r.cache_bytes {
        None => d.cache_bytes,
        Some(size) => usize::try_from(size.into_inner().0).unwrap_or(usize::MAX),
    };
    Ok(RoleConfig {
        name: name.get_ref().clone(),
        command,
        cwd,
        env,
        env_passthrough,
        handshake,
        min_warm,
        max_agents,
        concurrency: f.int(&r.concurrency, "concurrency", d.concurrency as u64, 1, 1024)? as usize,
        timeout: dur(r.timeout, d.timeout),
        startup_timeout: dur(r.startup_timeout, d.startup_timeout),
        queue_timeout: dur(r.queue_timeout, d.queue_timeout),
        max_calls: f.int(&r.max_calls, "max_calls", d.max_calls, 1, u64::MAX)?,
        idle_timeout: dur(r.idle_timeout, d.idle_timeout),
        protocol,
        shell: r.shell.is_some_and(Spanned::into_inner),
        idempotent,
        cache_ttl: dur(r.cache_ttl, d.cache_ttl),
        cache_capacity: f.int(&r.cache_capacity, "cache_capacity", d.cache_capacity as u64, 0, 1 << 32)? as usize,
        cache_bytes,
        route,
        breaker,
    })
}

/// The text being parsed, for turning byte offsets into `origin:line:` errors.
struct Ctx<'a> {
    origin: &'a str,
    text: &'a str,
}

impl Ctx<'_> {
    fn at(&self, offset: usize, message: String) -> ConfigError {
        let before = &self.text.as_bytes()[..offset.min(self.text.len())];
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        ConfigError::Invalid { origin: self.origin.to_owned(), line, message }
    }

    fn syntax(&self, e: &toml::de::Error) -> ConfigError {
        let message = format!("invalid TOML: {}", e.message().trim().replace('\n', "; "));
        self.at(e.span().map_or(0, |s| s.start), message)
    }

    // Serde's messages lack the dotted key, so it is recovered by finding which key or value
    // of the parsed tree holds the error's offset.
    fn serde(&self, e: &toml::de::Error) -> ConfigError {
        let at = e.span().map_or(0, |s| s.start);
        let key = DeTable::parse(self.text).ok().and_then(|t| key_at(t.get_ref(), at));
        let key = key.map(|k| k.iter().map(|s| quote(s)).collect::<Vec<_>>().join("."));
        let msg = e.message().trim();
        let invalid = (msg.strip_prefix("invalid type: ")).or(msg.strip_prefix("invalid value: "));
        let message = if let Some(rest) = msg.strip_prefix("unknown field ") {
            // "`x`, expected one of `a`, `b`": the backquoted words are the key, then the choices.
            let names: Vec<&str> = rest.split('`').skip(1).step_by(2).collect();
            let key = key.unwrap_or_else(|| names.first().map_or_else(String::new, |n| quote(n)));
            let expected = names.get(1..).unwrap_or_default().join(", ");
            format!("unknown key {key} (expected one of: {expected})")
        } else {
            let prefix = key.map(|k| format!("{k}: ")).unwrap_or_default();
            match invalid.and_then(|m| m.split_once(", expected ")) {
                Some((found, exp)) => {
                    format!("{prefix}expected {}, found {}", plain(exp), plain(found))
                }
                None => format!("{prefix}{msg}"),
            }
        };
        self.at(at, message)
    }
}

/// One role's dotted key prefix, for errors about its fields.
struct Fields<'a> {
    cx: &'a Ctx<'a>,
    key: String,
}

impl Fields<'_> {
    fn bad(&self, span: Range<usize>, field: &str, expected: &str, found: &str) -> ConfigError {
        let message = format!("{}.{field}: expected {expected}, found {found}", self.key);
        self.cx.at(span.start, message)
    }

    fn int(&self, v: &Opt<u64>, field: &str, default: u64, lo: u64, hi: u64) -> Res<u64> {
        let Some(v) = v else { return Ok(default) };
        if (lo..=hi).contains(v.get_ref()) {
            return Ok(*v.get_ref());
        }
        let expected = match hi {
            u64::MAX => format!("an integer of at least {lo}"),
            _ => format!("an integer from {lo} to {hi}"),
        };
        Err(self.bad(v.span(), field, &expected, &v.get_ref().to_string()))
    }

    fn pattern(&self, pattern: Spanned<String>) -> Res<String> {
        match regex::Regex::new(pattern.get_ref()) {
            Ok(_) => Ok(pattern.into_inner()),
            Err(e) => {
                let found = format!("{:?} ({})", pattern.get_ref(), e.to_string().lines().last().unwrap_or("invalid"));
                Err(self.bad(pattern.span(), "route", "a regular expression", &found))
            }
        }
    }

    fn var(&self, name: Spanned<String>, field: &str) -> Res<String> {
        if is_env_name(name.get_ref()) {
            return Ok(name.into_inner());
        }
        Err(self.bad(name.span(), field, VAR, &format!("{:?}", name.get_ref())))
    }
}

/// The dotted key at byte `at`: a key's own name wins, else the deepest key whose value covers it.
fn key_at(table: &DeTable<'_>, at: usize) -> Option<Vec<String>> {
    table.iter().find_map(|(k, v)| {
        // A table header's span covers its sub-keys, so names are matched before descending.
        if k.span().contains(&at) {
            return Some(vec![k.get_ref().to_string()]);
        }
        let inner = match v.get_ref() {
            DeValue::Table(t) => key_at(t, at),
            _ => None,
        };
        let key = k.get_ref().to_string();
        match inner {
            Some(path) => Some([vec![key], path].concat()),
            None => v.span().contains(&at).then(|| vec![key]),
        }
    })
}

/// A key segment as TOML would spell it, quoted unless bare.
fn quote(segment: &str) -> String {
    let bare = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'-';
    if !segment.is_empty() && segment.bytes().all(bare) {
        return segment.to_owned();
    }
    format!("{segment:?}")
}

/// Serde's type names in TOML's vocabulary.
fn plain(what: &str) -> &str {
    match what {
        "usize" | "u64" => "a non-negative integer",
        "a sequence" | "sequence" => "an array",
        "a map" | "map" => "a table",
        s if s.starts_with("struct ") => "a table",
        s => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"[roles.reviewer]
command = ["python3", "examples/agents/echo.py"]   # argv, never a shell
cwd = "."                    # optional
env = { MODEL = "x" }        # added to a cleared environment
env_passthrough = ["PATH", "HOME", "LANG"]   # the default when absent
handshake = "none"           # "none" (default) or "initialize"
min_warm = 2                 # default 1
max_agents = 8               # default max(min_warm, 4)
concurrency = 1              # default 1
timeout = "30s"              # default 30s
startup_timeout = "10s"      # default 10s
queue_timeout = "5s"         # default 5s
max_calls = 10000            # default 10000
idle_timeout = "5m"          # default 5m
"#;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, "skep.toml", Path::new("/srv/proj"))
    }

    fn role(text: &str, name: &str) -> RoleConfig {
        let config = parse(text).expect("config should parse");
        config.roles.get(name).expect("role should exist").clone()
    }

    fn argv(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| s.to_string()).collect()
    }

    /// Asserts the error names the origin and line, and contains every fragment.
    fn fails(text: &str, line: usize, fragments: &[&str]) {
        let err = parse(text).expect_err("config should be rejected").to_string();
        assert!(err.starts_with(&format!("skep.toml:{line}: ")), "wrong line: {err}");
        for fragment in fragments {
            assert!(err.contains(fragment), "{err:?} lacks {fragment:?}");
        }
    }

    /// A role `r` with a command and `extra` as line 3.
    fn with_line(extra: &str) -> String {
        format!("[roles.r]\ncommand = [\"agent\"]\n{extra}\n")
    }

    #[test]
    fn full_example_parses_to_exact_values() {
        let mut expected = RoleConfig::with_command("reviewer", argv(&["python3", "examples/agents/echo.py"]));
        expected.cwd = Some(PathBuf::from("/srv/proj"));
        expected.env = BTreeMap::from([("MODEL".to_owned(), "x".to_owned())]);
        expected.min_warm = 2;
        expected.max_agents = 8;
        let config = parse(EXAMPLE).expect("example should parse");
        assert_eq!(config.source, None);
        assert_eq!(config.roles, BTreeMap::from([("reviewer".to_owned(), expected)]));
    }

    #[test]
    fn every_key_is_read() {
        let text = r#"[roles.w]
command = ["agent", "--fast"]
cwd = "sub/dir"
env = { A = "1", B_2 = "two" }
env_passthrough = ["TERM"]
handshake = "initialize"
min_warm = 0
max_agents = 16
concurrency = 3
timeout = "1.5s"
startup_timeout = "250ms"
queue_timeout = "2m"
max_calls = 7
idle_timeout = "1h"
protocol = "command"
shell = true
idempotent = ["lookup", "tools/list"]
cache_ttl = "10m"
cache_capacity = 500
cache_bytes = "2MiB"
route = ["^review\\b", "lint"]
"#;
        let expected = RoleConfig {
            name: "w".to_owned(),
            command: argv(&["agent", "--fast"]),
            cwd: Some(PathBuf::from("/srv/proj/sub/dir")),
            env: BTreeMap::from([("A".into(), "1".into()), ("B_2".into(), "two".into())]),
            env_passthrough: argv(&["TERM"]),
            handshake: Handshake::Initialize,
            min_warm: 0,
            max_agents: 16,
            concurrency: 3,
            timeout: Duration::from_millis(1500),
            startup_timeout: Duration::from_millis(250),
            queue_timeout: Duration::from_secs(120),
            max_calls: 7,
            idle_timeout: Duration::from_secs(3600),
            protocol: Protocol::Command,
            shell: true,
            idempotent: argv(&["lookup", "tools/list"]),
            cache_ttl: Duration::from_secs(600),
            cache_capacity: 500,
            cache_bytes: 2 * 1024 * 1024,
            route: argv(&["^review\\b", "lint"]),
            breaker: BreakerConfig::default(),
        };
        assert_eq!(role(text, "w"), expected);
        assert_eq!(expected.argv(), argv(&["/bin/sh", "-c", "agent --fast"]));
    }

    #[test]
    fn mcp_roles_cache_their_tool_list_and_bad_new_keys_are_named() {
        let r = role("[roles.m]\ncommand = [\"server\"]\nhandshake = \"mcp\"\n", "m");
        assert_eq!((r.handshake, r.idempotent), (Handshake::Mcp, argv(&["tools/list"])));
        fails(
            &with_line(r#"route = ["ok", "(unclosed"]"#),
            3,
            &["roles.r.route: expected a regular expression", "(unclosed"],
        );
        fails(
            &with_line(r#"cache_bytes = "64 megs""#),
            3,
            &[r#"roles.r.cache_bytes: expected a size such as "512KiB""#],
        );
        fails(
            &with_line(r#"protocol = "grpc""#),
            3,
            &[r#"roles.r.protocol: expected "jsonrpc" or "command", found "grpc""#],
        );
        assert_eq!(parse_size("64MiB"), Some(64 << 20));
        assert_eq!(
            (parse_size("10KB"), parse_size("7"), parse_size("1.5MiB"), parse_size("")),
            (Some(10_000), Some(7), None, None)
        );
    }

    #[test]
    fn defaults_apply_when_keys_are_absent() {
        let r = role("[roles.r]\ncommand = [\"agent\"]\n", "r");
        assert_eq!(r, RoleConfig::with_command("r", argv(&["agent"])));
        assert_eq!(r.env_passthrough, argv(&["PATH", "HOME", "LANG"]));
        assert_eq!((r.min_warm, r.max_agents, r.concurrency, r.max_calls), (1, 4, 1, 10_000));
        assert_eq!(r.timeout, Duration::from_secs(30));
        assert_eq!(r.startup_timeout, Duration::from_secs(10));
        assert_eq!(r.queue_timeout, Duration::from_secs(5));
        assert_eq!(r.idle_timeout, Duration::from_secs(300));
        assert_eq!((r.handshake, r.cwd), (Handshake::None, None));
    }

    #[test]
    fn max_agents_defaults_to_at_least_min_warm() {
        assert_eq!(role(&with_line("min_warm = 6"), "r").max_agents, 6);
        assert_eq!(role(&with_line("min_warm = 3"), "r").max_agents, 4);
    }

    #[test]
    fn cwd_resolves_against_base_dir_unless_absolute() {
        assert_eq!(role(&with_line("cwd = \"./a/b\""), "r").cwd, Some("/srv/proj/a/b".into()));
        assert_eq!(role(&with_line("cwd = \"/abs\""), "r").cwd, Some("/abs".into()));
    }

    #[test]
    fn roles_are_sorted_by_name() {
        let text = "[roles.zeta]\ncommand = [\"z\"]\n[roles.alpha]\ncommand = [\"a\"]\n";
        let config = parse(text).expect("config should parse");
        assert_eq!(config.roles.keys().collect::<Vec<_>>(), ["alpha", "zeta"]);
        assert_eq!(config.roles["zeta"].name, "zeta");
    }

    #[test]
    fn load_reads_a_file_and_resolves_cwd_beside_it() {
        let dir = std::env::temp_dir().join(format!("skep-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("skep.toml");
        std::fs::write(&path, EXAMPLE).expect("write config");
        let config = Config::load(&path).expect("config should load");
        std::fs::remove_dir_all(&dir).expect("clean up");
        assert_eq!(config.source, Some(path));
        assert_eq!(config.roles["reviewer"].cwd, Some(dir));
    }

    #[test]
    fn load_reports_unreadable_file() {
        let err = Config::load(Path::new("/nonexistent/skep.toml")).expect_err("missing file");
        assert!(matches!(err, ConfigError::Read { .. }));
        assert_eq!(err.to_string(), "cannot read /nonexistent/skep.toml");
    }

    #[test]
    fn unknown_keys_name_the_key_and_the_choices() {
        fails(
            &with_line("comand = [\"x\"]"),
            3,
            &[
                "unknown key roles.r.comand (expected one of: command, cwd, env,",
                "idle_timeout, protocol, shell, idempotent, cache_ttl, cache_capacity, cache_bytes, route, breaker)",
            ],
        );
        fails("[role.r]\ncommand = [\"x\"]\n", 1, &["unknown key role (expected one of: roles, observe)"]);
        fails(&format!("{EXAMPLE}[other]\n"), 15, &["unknown key other"]);
        fails(&with_line("[roles.r.breaker]\nx = 1"), 4, &["unknown key roles.r.breaker.x (expected one of: window,"]);
    }

    #[test]
    fn wrong_types_name_the_key_and_the_expected_type() {
        fails(
            &with_line("min_warm = \"two\""),
            3,
            &["roles.r.min_warm: expected a non-negative integer, found string \"two\""],
        );
        fails(&with_line("max_agents = -1"), 3, &["roles.r.max_agents: expected a non-negative integer"]);
        fails("[roles.r]\ncommand = \"agent\"\n", 2, &["roles.r.command: expected an array"]);
        fails("[roles.r]\ncommand = [\"a\", 1]\n", 2, &["roles.r.command: expected a string, found integer"]);
        fails(&with_line("env = { X = 5 }"), 3, &["roles.r.env.X: expected a string"]);
        fails("roles = 5\n", 1, &["roles: expected a table, found integer `5`"]);
        fails("[roles]\nr = 5\n", 2, &["roles.r: expected a table"]);
        fails(
            "[roles.a]\ncommand = [\"a\"]\n\n[roles.b]\ncommand = [\"b\"]\ncwd = 1\n",
            6,
            &["roles.b.cwd: expected a string"],
        );
    }

    #[test]
    fn zero_durations_are_refused_as_such() {
        fails(&with_line("timeout = \"0s\""), 3, &[r#"roles.r.timeout: expected a duration above zero, found "0s""#]);
    }

    #[test]
    fn bad_durations_say_what_a_duration_looks_like() {
        for (value, found) in [
            ("\"30\"", "found \"30\""),
            ("\"30 sec\"", "found \"30 sec\""),
            ("\"-1s\"", "found \"-1s\""),
            ("\"\"", "found \"\""),
            ("30", "found integer `30`"),
        ] {
            fails(
                &with_line(&format!("timeout = {value}")),
                3,
                &[r#"roles.r.timeout: expected a duration such as "250ms", "30s" or "5m""#, found],
            );
        }
        fails(&with_line("idle_timeout = \"5 m\""), 3, &["roles.r.idle_timeout: expected a duration"]);
    }

    #[test]
    fn bad_role_names_are_rejected() {
        let long = "a".repeat(65);
        for (header, key) in [
            ("\"#(touch x)\"", "roles.\"#(touch x)\""),
            ("\"a;b\"", "roles.\"a;b\""),
            (long.as_str(), long.as_str()),
            ("\"\"", "roles.\"\""),
        ] {
            let text = format!("[roles.ok]\ncommand = [\"a\"]\n[roles.{header}]\ncommand = [\"a\"]\n");
            fails(&text, 3, &[key, "expected a role name of 1 to 64 characters from [A-Za-z0-9._-]"]);
        }
        let max = "a".repeat(64);
        assert_eq!(role(&format!("[roles.{max}]\ncommand = [\"a\"]\n"), &max).name, max);
    }

    #[test]
    fn min_warm_above_max_agents_is_rejected() {
        fails(
            &with_line("max_agents = 2\nmin_warm = 3"),
            4,
            &["roles.r.min_warm: expected at most max_agents (2), found 3"],
        );
    }

    #[test]
    fn out_of_range_integers_are_rejected() {
        fails(&with_line("max_agents = 0"), 3, &["roles.r.max_agents: expected an integer from 1 to 4096, found 0"]);
        fails(&with_line("max_agents = 4097"), 3, &["roles.r.max_agents: expected an integer from 1 to 4096"]);
        fails(&with_line("concurrency = 1025"), 3, &["roles.r.concurrency: expected an integer from 1 to 1024"]);
        fails(&with_line("max_calls = 0"), 3, &["roles.r.max_calls: expected an integer of at least 1, found 0"]);
    }

    #[test]
    fn empty_or_missing_command_is_rejected() {
        let expected = r#"expected a non-empty argv array such as ["python3", "agent.py"]"#;
        fails("[roles.r]\ncommand = []\n", 2, &["roles.r.command: ", expected, "found []"]);
        fails("[roles.r]\ncommand = [\"\", \"x\"]\n", 2, &["roles.r.command: ", expected, "found [\"\", \"x\"]"]);
        fails("[roles.r]\nmin_warm = 1\n", 1, &["roles.r.command: ", expected, "found nothing"]);
    }

    #[test]
    fn bad_handshake_is_rejected() {
        fails(
            &with_line("handshake = \"init\""),
            3,
            &[r#"roles.r.handshake: expected "none", "initialize" or "mcp", found "init""#],
        );
    }

    #[test]
    fn bad_env_names_are_rejected() {
        let expected = "expected an environment variable name matching [A-Za-z_][A-Za-z0-9_]*";
        fails(&with_line("env = { \"1X\" = \"y\" }"), 3, &["roles.r.env: ", expected, "found \"1X\""]);
        fails(
            &with_line("env_passthrough = [\"PATH\", \"A-B\"]"),
            3,
            &["roles.r.env_passthrough: ", expected, "found \"A-B\""],
        );
    }

    #[test]
    fn toml_syntax_errors_carry_file_and_line() {
        fails("[roles.r]\ncommand = [\"a\"\n", 2, &["invalid TOML: ", "expected `]`"]);
        fails("[roles.r]\ncommand = [\"a\"]\n\nbad\n", 4, &["invalid TOML: "]);
        fails(&with_line("[roles.r]"), 3, &["invalid TOML: duplicate key"]);
    }

    #[test]
    fn no_roles_is_rejected() {
        let expected = "roles: expected at least one table such as [roles.worker], found none";
        fails("", 1, &[expected]);
        fails("# nothing yet\n", 1, &[expected]);
        fails("\n[roles]\n", 2, &[expected]);
    }

    #[test]
    fn observe_socket_resolves_against_base_dir_and_bad_keys_are_named() {
        let text = "[roles.r]\ncommand = [\"agent\"]\n[observe]\nsocket = \"run/skep.sock\"\n";
        assert_eq!(parse(text).unwrap().observe, Some(PathBuf::from("/srv/proj/run/skep.sock")));
        let text = "[roles.r]\ncommand = [\"agent\"]\n[observe]\nsocket = \"/abs.sock\"\n";
        assert_eq!(parse(text).unwrap().observe, Some(PathBuf::from("/abs.sock")));
        assert_eq!(parse("[roles.r]\ncommand = [\"agent\"]\n").unwrap().observe, None);
        fails("[roles.r]\ncommand = [\"agent\"]\n[observe]\nsocket = \"\"\n", 4, &["observe.socket", "empty"]);
        fails("[roles.r]\ncommand = [\"agent\"]\n[observe]\nsokcet = \"x\"\n", 4, &["sokcet"]);
    }

    #[test]
    fn inline_origin_is_named() {
        let err = Config::parse("roles = 1", "<inline>", Path::new(".")).expect_err("bad config");
        assert!(err.to_string().starts_with("<inline>:1: roles: "), "{err}");
    }

    #[test]
    fn parse_duration_table() {
        let ms = Duration::from_millis;
        for (text, expected) in [
            ("250ms", Some(ms(250))),
            ("30s", Some(ms(30_000))),
            ("1.5s", Some(ms(1500))),
            ("0.1s", Some(ms(100))),
            ("5m", Some(ms(300_000))),
            ("1h", Some(ms(3_600_000))),
            ("1.25h", Some(ms(4_500_000))),
            ("0s", Some(Duration::ZERO)),
            ("0.0000000001s", Some(Duration::ZERO)),
            ("30", None),
            ("30 sec", None),
            ("30sec", None),
            ("-1s", None),
            ("+1s", None),
            ("", None),
            ("s", None),
            (".5s", None),
            ("1.s", None),
            ("1.2.3s", None),
            (" 1s", None),
            ("1s ", None),
            ("1d", None),
            ("1S", None),
            ("99999999999999999999999h", None),
        ] {
            assert_eq!(parse_duration(text), expected, "{text:?}");
        }
    }

    #[test]
    fn valid_names() {
        for name in ["reviewer", "a", "A.b_c-9", &"x".repeat(64)] {
            assert!(is_valid_name(name), "{name:?}");
        }
        for name in ["", "#(touch x)", "a;b", "a b", "a/b", "é", &"x".repeat(65)] {
            assert!(!is_valid_name(name), "{name:?}");
        }
    }
}
