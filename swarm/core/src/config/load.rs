//! Reading `skep.toml` and building each role: defaults, ranges and the checks
//! serde cannot make, each error pointing at the key's line and column.

use std::{collections::BTreeMap, ops::Range, path::Path};

use toml::Spanned;

use super::mcp::RawTool;
use super::raw::{Opt, RawConfig, RawCost, RawDaemon, RawRlimits, RawRole};
use super::units::{Count, Dur, Size};
use super::{
    Config, ConfigError, Cost, DaemonConfig, Handshake, Protocol, RoleConfig, ToolConfig, is_env_name, is_valid_name,
};
use crate::diagnostic::{Invalid, from_toml, quote, read_source};
use crate::preload;
use crate::process::Rlimits;

const ARGV: &str = r#"a non-empty argv array such as ["python3", "agent.py"]"#;
const VAR: &str = "an environment variable name matching [A-Za-z_][A-Za-z0-9_]*";
const HANDSHAKE: &str = r#""none", "initialize" or "mcp""#;
const PROTOCOL: &str = r#""jsonrpc", "command" or "preload""#;
const SCRIPT: &str = r#"the path of a Python script such as "tools/summarize.py""#;
const NAME: &str = "a role name of 1 to 64 characters from [A-Za-z0-9._-]";

type Res<T> = Result<T, ConfigError>;

impl Config {
    /// Reads and validates a file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = read_source(path)?;
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
        let raw: RawConfig = from_toml(origin, text)?;
        let (at, raw_roles) = raw.roles.map_or((0, BTreeMap::new()), |r| (r.span().start, r.into_inner()));
        if raw_roles.is_empty() {
            let problem = "expected at least one table such as [roles.worker], found none";
            return Err(cx.at(at..at, "roles", problem.to_owned()));
        }
        let role_spans = raw_roles.iter().map(|(n, r)| (n.clone(), r.span())).collect();
        let roles = (raw_roles.into_iter())
            .map(|(n, raw)| build_role(&cx, n, raw, base_dir).map(|r| (r.name.clone(), r)))
            .collect::<Res<_>>()?;
        let observe = match raw.observe.and_then(|o| o.into_inner().socket) {
            Some(socket) if socket.get_ref().is_empty() => {
                let problem = "expected a socket path such as \"skep.sock\", found an empty string";
                return Err(cx.at(socket.span(), "observe.socket", problem.to_owned()));
            }
            Some(socket) => Some(base_dir.join(socket.into_inner())),
            None => None,
        };
        let daemon = match raw.daemon.map(Spanned::into_inner) {
            Some(d) => build_daemon(&cx, d)?,
            None => DaemonConfig::default(),
        };
        let mcp = match raw.mcp {
            Some(m) => {
                m.into_inner().build().map_err(|(span, key, problem)| cx.at(span, &format!("mcp.{key}"), problem))?
            }
            None => super::McpConfig::default(),
        };
        check_tool_naming(&cx, &roles, &mcp.separator, &role_spans)?;
        let cluster = raw.cluster.map(|c| super::cluster::build(&cx, c, base_dir)).transpose()?;
        let needs_cluster = |r: &&RoleConfig| r.protocol == Protocol::Remote || r.spill_remote;
        if let Some(remote) = roles.values().find(needs_cluster).filter(|_| cluster.is_none()) {
            let key = if remote.spill_remote { "spill = \"remote\"" } else { "remote = true" };
            let problem = format!(
                "role {} is {key}, so the config needs a [cluster] table with nats = \"nats://HOST:4222\"",
                remote.name
            );
            return Err(cx.at(at..at, "cluster", problem));
        }
        Ok(Config { roles, source: None, observe, daemon, mcp, cluster })
    }
}

/// A role whose tools the gateway offers must not contain the separator, so
/// that `<role><sep><tool>` names one role only and no two roles' tools collide.
fn check_tool_naming(
    cx: &Ctx<'_>,
    roles: &BTreeMap<String, RoleConfig>,
    separator: &str,
    spans: &BTreeMap<String, Range<usize>>,
) -> Res<()> {
    let offered = |r: &RoleConfig| r.handshake == Handshake::Mcp || !r.tools.is_empty();
    match roles.values().find(|r| offered(r) && r.name.contains(separator)) {
        None => Ok(()),
        Some(r) => {
            let problem = format!(
                "the role name {:?} contains the MCP tool separator {separator:?}, so its tools' names would be ambiguous: rename the role or set [mcp] separator",
                r.name
            );
            Err(cx.at(spans.get(&r.name).cloned().unwrap_or(0..0), &format!("roles.{}", quote(&r.name)), problem))
        }
    }
}

fn build_daemon(cx: &Ctx<'_>, raw: RawDaemon) -> Res<DaemonConfig> {
    let d = DaemonConfig::default();
    let idle_exit = raw.idle_exit.map_or(d.idle_exit, |v| v.0);
    let max_in_flight_per_client = match raw.max_in_flight_per_client {
        None => d.max_in_flight_per_client,
        Some(n) if (1..=65_536).contains(&n.get_ref().0) => n.get_ref().0 as usize,
        Some(n) => {
            let problem = format!("expected an integer from 1 to 65536, found {}", n.get_ref().0);
            return Err(cx.at(n.span(), "daemon.max_in_flight_per_client", problem));
        }
    };
    Ok(DaemonConfig { idle_exit, max_in_flight_per_client })
}

fn build_role(cx: &Ctx<'_>, name: String, raw: Spanned<RawRole>, base: &Path) -> Res<RoleConfig> {
    let f = Fields { cx, key: format!("roles.{}", quote(&name)) };
    let header = raw.span();
    let r = raw.into_inner();
    if !is_valid_name(&name) {
        return Err(cx.at(header, &f.key, format!("expected {NAME}, found {name:?}")));
    }
    let d = RoleConfig::with_command(&name, Vec::new());
    let is_preload = r.protocol.as_ref().is_some_and(|p| p.get_ref() == "preload");
    let preload_only =
        [("script", r.script.as_ref().map(Spanned::span)), ("preload", r.preload.as_ref().map(Spanned::span))];
    if let Some((key, span)) = preload_only.into_iter().find_map(|(k, s)| s.map(|s| (k, s))).filter(|_| !is_preload) {
        let problem = format!("{key} is only for preload roles: add protocol = \"preload\", or leave {key} out");
        return Err(cx.at(span, &format!("{}.{key}", f.key), problem));
    }
    let remote = r.remote.as_ref().is_some_and(|v| *v.get_ref());
    if remote && name.contains('.') {
        let problem = format!("a remote role's name is a NATS subject token: no dots, found {name:?}");
        return Err(cx.at(header, &f.key, problem));
    }
    if let Some((key, span)) =
        [("command", r.command.as_ref().map(Spanned::span)), ("protocol", r.protocol.as_ref().map(Spanned::span))]
            .into_iter()
            .find_map(|(k, s)| s.map(|s| (k, s)))
            .filter(|_| remote)
    {
        let problem = format!("a remote role runs on `skep worker` hosts, which say how: leave {key} out here");
        return Err(cx.at(span, &format!("{}.{key}", f.key), problem));
    }
    let command = match r.command {
        // A remote role's agents are the workers'; its pool here never starts one.
        None if remote => Vec::new(),
        Some(c) if c.get_ref().first().is_some_and(|p| !p.is_empty()) => c.into_inner(),
        Some(c) => return Err(f.bad(c.span(), "command", ARGV, &format!("{:?}", c.get_ref()))),
        // A preload role's command is only its Python interpreter.
        None if is_preload => vec![preload::DEFAULT_INTERPRETER.to_owned()],
        None => return Err(f.bad(header, "command", ARGV, "nothing")),
    };
    let cwd = match r.cwd {
        Some(c) if c.get_ref().is_empty() => return Err(f.bad(c.span(), "cwd", "a path", "\"\"")),
        c => c.map(|c| base.join(c.into_inner())),
    };
    let env_map = r.env.map(Spanned::into_inner).unwrap_or_default();
    let env = (env_map.into_iter())
        .map(|(k, v)| {
            let span = v.span();
            Ok((f.var(Spanned::new(span, k), "env")?, v.into_inner()))
        })
        .collect::<Res<_>>()?;
    let env_passthrough = match r.env_passthrough.map(Spanned::into_inner) {
        Some(names) => names.into_iter().map(|k| f.var(k, "env_passthrough")).collect::<Res<_>>()?,
        None => d.env_passthrough,
    };
    let handshake_span = r.handshake.as_ref().map(Spanned::span);
    let handshake = match r.handshake {
        // A preload role's parent answers `initialize` once its modules are imported.
        None if is_preload => Handshake::Initialize,
        None => Handshake::None,
        Some(h) => match h.get_ref().as_str() {
            "none" => Handshake::None,
            "initialize" => Handshake::Initialize,
            "mcp" => Handshake::Mcp,
            other => return Err(f.bad(h.span(), "handshake", HANDSHAKE, &format!("{other:?}"))),
        },
    };
    let min_warm = match remote {
        true => f.int(&r.min_warm, "min_warm", 0, 0, 0)? as usize,
        false => f.int(&r.min_warm, "min_warm", d.min_warm as u64, 0, 4096)? as usize,
    };
    let max_agents = f.int(&r.max_agents, "max_agents", min_warm.max(4) as u64, 1, 4096)? as usize;
    if min_warm > max_agents {
        let span = r.min_warm.as_ref().map_or(header, Spanned::span);
        let expected = format!("at most max_agents ({max_agents})");
        return Err(f.bad(span, "min_warm", &expected, &min_warm.to_string()));
    }
    let dur = |v: Opt<Dur>, default| v.map_or(default, |v| v.into_inner().0);
    let protocol = match r.protocol {
        None if remote => Protocol::Remote,
        None => Protocol::JsonRpc,
        Some(p) => match p.get_ref().as_str() {
            "jsonrpc" => Protocol::JsonRpc,
            "command" => Protocol::Command,
            "preload" => f.preload(r.script, r.preload, header, base)?,
            other => return Err(f.bad(p.span(), "protocol", PROTOCOL, &format!("{other:?}"))),
        },
    };
    if is_preload {
        if let Some(span) = handshake_span.filter(|_| handshake != Handshake::Initialize) {
            let problem = "a preload role's handshake is always \"initialize\": leave it out".to_owned();
            return Err(cx.at(span, &format!("{}.handshake", f.key), problem));
        }
        if let Some(shell) = r.shell.as_ref().filter(|s| *s.get_ref()) {
            let problem = "a preload role runs a Python script, never a shell: leave shell out".to_owned();
            return Err(cx.at(shell.span(), &format!("{}.shell", f.key), problem));
        }
    }
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
                return Err(cx.at(span, &format!("{}.breaker", f.key), rule.to_owned()));
            }
            breaker
        }
    };
    let recycle_jitter = match r.recycle_jitter {
        None => d.recycle_jitter,
        Some(j) if (0.0..1.0).contains(j.get_ref()) => j.into_inner(),
        Some(j) => {
            return Err(f.bad(
                j.span(),
                "recycle_jitter",
                "a number from 0 up to (not including) 1",
                &j.get_ref().to_string(),
            ));
        }
    };
    let cpu_max = match r.cpu_max {
        None => None,
        Some(c) if *c.get_ref() > 0.0 && *c.get_ref() <= 4096.0 => Some(c.into_inner()),
        Some(c) => {
            return Err(f.bad(
                c.span(),
                "cpu_max",
                "a number of CPUs above 0 and at most 4096, such as 0.5",
                &c.get_ref().to_string(),
            ));
        }
    };
    let rlimits = match r.rlimits {
        None => Rlimits::default(),
        Some(raw) => f.rlimits(raw.into_inner())?,
    };
    let cache_bytes = match r.cache_bytes {
        None => d.cache_bytes,
        // `parse_size` caps sizes at 1 TiB, which fits a 64-bit usize.
        Some(size) => usize::try_from(size.into_inner().0).unwrap_or(usize::MAX),
    };
    let cost = r.cost.map(|c| f.cost(c.into_inner())).transpose()?;
    let tools = f.tools(r.tools, handshake)?;
    let share = match r.share {
        None => super::Share::Pool,
        Some(s) => match super::Share::parse(s.get_ref()) {
            Some(share) => share,
            None => return Err(f.bad(s.span(), "share", r#""pool" or "session""#, &format!("{:?}", s.get_ref()))),
        },
    };
    let spill_remote = match r.spill {
        None => false,
        Some(s) => match s.get_ref().as_str() {
            "none" => false,
            "remote" if remote => {
                let problem = "a remote role has no local pool to spill from: leave spill out".to_owned();
                return Err(cx.at(s.span(), &format!("{}.spill", f.key), problem));
            }
            "remote" if protocol == Protocol::Command => {
                let problem = "spill is for warm pools; a command role runs a process per call".to_owned();
                return Err(cx.at(s.span(), &format!("{}.spill", f.key), problem));
            }
            "remote" if name.contains('.') => {
                let problem =
                    format!("a role that spills to remote workers is a NATS subject token: no dots, found {name:?}");
                return Err(cx.at(s.span(), &format!("{}.spill", f.key), problem));
            }
            "remote" => true,
            other => return Err(f.bad(s.span(), "spill", r#""remote" or "none""#, &format!("{other:?}"))),
        },
    };
    Ok(RoleConfig {
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
        max_lifetime: r.max_lifetime.map(|v| v.into_inner().0),
        recycle_jitter,
        max_rss: f.size_above_zero(r.max_rss, "max_rss")?,
        rlimits,
        memory_max: f.size_above_zero(r.memory_max, "memory_max")?,
        cpu_max,
        idle_timeout: dur(r.idle_timeout, d.idle_timeout),
        protocol,
        shell: r.shell.is_some_and(Spanned::into_inner),
        idempotent,
        cache_ttl: dur(r.cache_ttl, d.cache_ttl),
        cache_capacity: f.int(&r.cache_capacity, "cache_capacity", d.cache_capacity as u64, 0, 1 << 32)? as usize,
        cache_bytes,
        route,
        breaker,
        cost,
        tools,
        share,
        spill_remote,
        name,
    })
}

/// The text being parsed, for errors at a span.
pub(super) struct Ctx<'a> {
    origin: &'a str,
    text: &'a str,
}

impl Ctx<'_> {
    pub(super) fn at(&self, span: Range<usize>, key: &str, problem: String) -> ConfigError {
        Invalid::at(self.origin, self.text, span.start, problem).key(key).into()
    }
}

/// One role's dotted key prefix, for errors about its fields.
struct Fields<'a> {
    cx: &'a Ctx<'a>,
    key: String,
}

impl Fields<'_> {
    fn bad(&self, span: Range<usize>, field: &str, expected: &str, found: &str) -> ConfigError {
        self.cx.at(span, &format!("{}.{field}", self.key), format!("expected {expected}, found {found}"))
    }

    fn int(&self, v: &Opt<Count>, field: &str, default: u64, lo: u64, hi: u64) -> Res<u64> {
        let Some(v) = v else { return Ok(default) };
        let n = v.get_ref().0;
        if (lo..=hi).contains(&n) {
            return Ok(n);
        }
        let expected = match hi {
            u64::MAX => format!("an integer of at least {lo}"),
            _ => format!("an integer from {lo} to {hi}"),
        };
        Err(self.bad(v.span(), field, &expected, &n.to_string()))
    }

    /// An optional size that must not be zero (a zero memory bound would recycle every agent at once).
    fn size_above_zero(&self, v: Opt<Size>, field: &str) -> Res<Option<u64>> {
        match v {
            Some(v) if v.get_ref().0 == 0 => Err(self.bad(v.span(), field, "a size above zero", "0")),
            v => Ok(v.map(|v| v.into_inner().0)),
        }
    }

    fn rlimits(&self, raw: RawRlimits) -> Res<Rlimits> {
        let count = |v: &Opt<Count>, field: &str| match v {
            None => Ok(None),
            // The kernel refuses more open files than fs.nr_open (2^20 by default) anyway.
            Some(_) => self.int(v, field, 0, 1, 1 << 30).map(Some),
        };
        Ok(Rlimits {
            nofile: count(&raw.nofile, "rlimits.nofile")?,
            data: self.size_above_zero(raw.data, "rlimits.data")?,
            cpu: raw.cpu.map(|v| v.into_inner().0),
            nproc: count(&raw.nproc, "rlimits.nproc")?,
        })
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

    fn cost(&self, raw: RawCost) -> Res<Cost> {
        let price = |v: Spanned<f64>, field: &str| {
            let n = *v.get_ref();
            if n.is_finite() && n >= 0.0 {
                Ok(n)
            } else {
                Err(self.bad(v.span(), &format!("cost.{field}"), "a price of at least 0", &n.to_string()))
            }
        };
        let usage = raw.usage.map(Spanned::into_inner).unwrap_or_default();
        Ok(Cost {
            per_second: raw.per_second.map(|v| price(v, "per_second")).transpose()?.unwrap_or(0.0),
            per_call: raw.per_call.map(|v| price(v, "per_call")).transpose()?.unwrap_or(0.0),
            usage: usage
                .into_iter()
                .map(|(k, v)| Ok((k.clone(), price(v, &format!("usage.{k}"))?)))
                .collect::<Res<_>>()?,
        })
    }

    /// A preload role's script (required) and modules.
    fn preload(
        &self,
        script: Opt<String>,
        modules: Opt<Vec<Spanned<String>>>,
        header: Range<usize>,
        base: &Path,
    ) -> Res<Protocol> {
        let script = match script {
            Some(s) if !s.get_ref().is_empty() => base.join(s.into_inner()),
            Some(s) => return Err(self.bad(s.span(), "script", SCRIPT, "\"\"")),
            None => return Err(self.bad(header, "script", SCRIPT, "nothing")),
        };
        let modules = (modules.map(Spanned::into_inner).unwrap_or_default().into_iter())
            .map(|m| match preload::is_module_name(m.get_ref()) {
                true => Ok(m.into_inner()),
                false => Err(self.bad(
                    m.span(),
                    "preload",
                    "a module name such as \"my_pkg.heavy\"",
                    &format!("{:?}", m.get_ref()),
                )),
            })
            .collect::<Res<_>>()?;
        Ok(Protocol::Preload { script, modules })
    }

    /// `[[roles.NAME.tools]]`: each valid, no name twice, and none on an MCP role (its server lists its own).
    fn tools(&self, raw: Opt<Vec<Spanned<RawTool>>>, handshake: Handshake) -> Res<Vec<ToolConfig>> {
        let Some(raw) = raw else { return Ok(Vec::new()) };
        if handshake == Handshake::Mcp {
            let problem = "an MCP role's tools come from its server: leave tools out".to_owned();
            return Err(self.cx.at(raw.span(), &format!("{}.tools", self.key), problem));
        }
        let mut tools: Vec<ToolConfig> = Vec::new();
        for (i, t) in raw.into_inner().into_iter().enumerate() {
            let header = t.span();
            let key = |field: &str| format!("{}.tools[{i}].{field}", self.key);
            let tool =
                t.into_inner().build(header.clone()).map_err(|(span, field, p)| self.cx.at(span, &key(field), p))?;
            if tools.iter().any(|seen| seen.name == tool.name) {
                let problem = format!("the tool name {:?} is already used by this role", tool.name);
                return Err(self.cx.at(header, &key("name"), problem));
            }
            tools.push(tool);
        }
        Ok(tools)
    }

    fn var(&self, name: Spanned<String>, field: &str) -> Res<String> {
        if is_env_name(name.get_ref()) {
            return Ok(name.into_inner());
        }
        Err(self.bad(name.span(), field, VAR, &format!("{:?}", name.get_ref())))
    }
}
