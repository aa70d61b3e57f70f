use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::Duration,
};

use super::*;
use crate::breaker::BreakerConfig;

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
    let column = err.strip_prefix(&format!("skep.toml:{line}:")).and_then(|rest| rest.split_once(": "));
    assert!(column.is_some_and(|(c, _)| c.parse::<usize>().is_ok()), "wrong line: {err}");
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
max_lifetime = "12h"
recycle_jitter = 0.25
max_rss = "1GiB"
rlimits = { nofile = 4096, data = "2GiB", cpu = "10m", nproc = 256 }
memory_max = "1.5GiB"
cpu_max = 0.5
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
        max_lifetime: Some(Duration::from_secs(12 * 3600)),
        recycle_jitter: 0.25,
        max_rss: Some(1 << 30),
        rlimits: crate::process::Rlimits {
            nofile: Some(4096),
            data: Some(2 << 30),
            cpu: Some(Duration::from_secs(600)),
            nproc: Some(256),
        },
        memory_max: Some(3 << 29),
        cpu_max: Some(0.5),
        idle_timeout: Duration::from_secs(3600),
        protocol: Protocol::Command,
        shell: true,
        idempotent: argv(&["lookup", "tools/list"]),
        cache_ttl: Duration::from_secs(600),
        cache_capacity: 500,
        cache_bytes: 2 * 1024 * 1024,
        route: argv(&["^review\\b", "lint"]),
        breaker: BreakerConfig::default(),
        cost: None,
        tools: Vec::new(),
        share: super::Share::Pool,
        spill_remote: false,
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
    fails(&with_line(r#"cache_bytes = "64 megs""#), 3, &[r#"roles.r.cache_bytes: expected a size such as "512KiB""#]);
    fails(
        &with_line(r#"protocol = "grpc""#),
        3,
        &[r#"roles.r.protocol: expected "jsonrpc", "command" or "preload", found "grpc""#],
    );
    assert_eq!(role(&with_line(r#"cache_bytes = "64MiB""#), "r").cache_bytes, 64 << 20);
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
    assert_eq!((r.max_lifetime, r.max_rss, r.memory_max, r.cpu_max), (None, None, None, None));
    assert_eq!((r.recycle_jitter, r.rlimits), (0.1, crate::process::Rlimits::default()));
}

#[test]
fn limit_keys_out_of_range_are_named_with_what_was_expected() {
    fails(
        &with_line("recycle_jitter = 1.0"),
        3,
        &["roles.r.recycle_jitter: expected a number from 0 up to (not including) 1, found 1"],
    );
    fails(&with_line("recycle_jitter = -0.1"), 3, &["roles.r.recycle_jitter: expected a number from 0"]);
    fails(&with_line(r#"max_rss = "0""#), 3, &["roles.r.max_rss: expected a size above zero, found 0"]);
    fails(&with_line(r#"max_rss = "lots""#), 3, &[r#"roles.r.max_rss: expected a size such as "512KiB""#]);
    fails(&with_line(r#"max_lifetime = "12""#), 3, &["roles.r.max_lifetime: expected a duration"]);
    fails(&with_line("cpu_max = 0"), 3, &["roles.r.cpu_max: expected a number of CPUs above 0 and at most 4096"]);
    fails(
        &with_line("rlimits = { nofile = 0 }"),
        3,
        &["roles.r.rlimits.nofile: expected an integer from 1 to 1073741824, found 0"],
    );
    fails(&with_line(r#"rlimits = { data = "0" }"#), 3, &["roles.r.rlimits.data: expected a size above zero, found 0"]);
    fails(&with_line(r#"rlimits = { cpu = "0s" }"#), 3, &["roles.r.rlimits.cpu", "above zero"]);
    fails(
        &with_line("rlimits = { as = 1 }"),
        3,
        &["roles.r.rlimits.as: unknown field `as`, expected one of `nofile`, `data`, `cpu`, `nproc`"],
    );
    let r = role(&with_line("rlimits = { nproc = 64 }"), "r");
    assert_eq!(r.rlimits, crate::process::Rlimits { nproc: Some(64), ..Default::default() });
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
    let temp = tempfile::tempdir().expect("temp dir");
    let dir = temp.path().to_path_buf();
    let path = dir.join("skep.toml");
    std::fs::write(&path, EXAMPLE).expect("write config");
    let config = Config::load(&path).expect("config should load");
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
            "roles.r.comand: unknown field `comand`, expected one of `command`, `cwd`, `env`,",
            "`idle_timeout`, `protocol`, `script`, `preload`, `shell`, `idempotent`, `cache_ttl`, `cache_capacity`, \
             `cache_bytes`, `route`, `breaker`",
        ],
    );
    fails(
        "[role.r]\ncommand = [\"x\"]\n",
        1,
        &["role: unknown field `role`, expected one of `roles`, `observe`, `daemon`"],
    );
    fails(&format!("{EXAMPLE}[other]\n"), 15, &["other: unknown field `other`"]);
    fails(
        &with_line("[roles.r.breaker]\nx = 1"),
        4,
        &["roles.r.breaker.x: unknown field `x`, expected one of `window`,"],
    );
}

#[test]
fn wrong_types_name_the_key_and_the_expected_type() {
    fails(
        &with_line("min_warm = \"two\""),
        3,
        &["roles.r.min_warm: invalid type: string \"two\", expected a non-negative integer"],
    );
    fails(
        &with_line("max_agents = -1"),
        3,
        &["roles.r.max_agents: invalid value: integer `-1`, expected a non-negative integer"],
    );
    fails(
        "[roles.r]\ncommand = \"agent\"\n",
        2,
        &["roles.r.command: invalid type: string \"agent\", expected a sequence"],
    );
    fails(
        "[roles.r]\ncommand = [\"a\", 1]\n",
        2,
        &["roles.r.command[1]: invalid type: integer `1`, expected a string"],
    );
    fails(&with_line("env = { X = 5 }"), 3, &["roles.r.env.X: invalid type: integer `5`, expected a string"]);
    fails("roles = 5\n", 1, &["roles: invalid type: integer `5`, expected a map"]);
    fails("[roles]\nr = 5\n", 2, &["roles.r: invalid type: integer `5`, expected a role table such as [roles.worker]"]);
    fails(
        "[roles.a]\ncommand = [\"a\"]\n\n[roles.b]\ncommand = [\"b\"]\ncwd = 1\n",
        6,
        &["roles.b.cwd: invalid type: integer `1`, expected a string"],
    );
}

#[test]
fn zero_durations_are_refused_as_such() {
    fails(&with_line("timeout = \"0s\""), 3, &[r#"roles.r.timeout: expected a duration above zero, found "0s""#]);
}

#[test]
fn bad_durations_say_what_a_duration_looks_like() {
    let expected = r#"expected a duration such as "250ms", "30s", "1.5m" or "1h""#;
    for value in ["\"30\"", "\"30 lightyears\"", "\"-1s\"", "\"\"", "\"1S\""] {
        fails(
            &with_line(&format!("timeout = {value}")),
            3,
            &[&format!("roles.r.timeout: {expected}, found {value} (")],
        );
    }
    fails(&with_line("timeout = 30"), 3, &[&format!("roles.r.timeout: invalid type: integer `30`, {expected}")]);
    fails(&with_line("idle_timeout = \"5 q\""), 3, &["roles.r.idle_timeout: expected a duration"]);
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
    assert!(err.to_string().starts_with("<inline>:1:9: roles: "), "{err}");
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

#[test]
fn durations_past_thirty_days_are_refused_naming_the_key_and_the_maximum() {
    // Issue 19 item 5: this loaded and was then reported as `timeoutMs: 100`.
    let bound = r#"expected a duration of at most 30 days ("720h"), found"#;
    fails(
        &with_line(r#"timeout = "18446744073709551.716s""#),
        3,
        &[&format!("roles.r.timeout: {bound} \"18446744073709551.716s\"")],
    );
    fails(&with_line(r#"cache_ttl = "721h""#), 3, &[&format!("roles.r.cache_ttl: {bound}")]);
    fails(
        &with_line("[roles.r.breaker]\nopen_for_max = \"31days\""),
        4,
        &[&format!("roles.r.breaker.open_for_max: {bound}")],
    );
    let r = role(&with_line(r#"timeout = "720h""#), "r");
    assert_eq!(r.timeout, MAX_DURATION);
    assert_eq!(r.timeout.as_millis(), 2_592_000_000);
}

#[test]
fn sizes_past_one_tebibyte_are_refused() {
    fails(
        &with_line(r#"cache_bytes = "20000000000GiB""#),
        3,
        &["roles.r.cache_bytes: expected a size of at most 1TiB"],
    );
    assert_eq!(role(&with_line(r#"cache_bytes = "1.5MiB""#), "r").cache_bytes, 3 << 19);
}

#[test]
fn errors_carry_line_column_and_key_as_data() {
    let text = "[roles.r]\ncommand = [\"agent\"]\nconcurrency = 0\n";
    let Err(ConfigError::Invalid(invalid)) = parse(text) else { panic!("concurrency 0 must be refused") };
    assert_eq!((invalid.location.line, invalid.location.column), (3, 15));
    assert_eq!(invalid.location.key.as_deref(), Some("roles.r.concurrency"));
    assert_eq!(invalid.location.file, "skep.toml");
}

#[test]
fn breaker_keys_are_read_and_bad_combinations_named() {
    let text = with_line(
        "[roles.r.breaker]\nwindow = 40\nmin_calls = 5\nfailure_rate = 0.25\nslow_call = \"2s\"\nslow_rate = 0.5\n\
         open_for = \"3s\"\nopen_for_max = \"2m\"\nhalf_open_probes = 3\nprobe_timeout = \"7s\"",
    );
    let expected = BreakerConfig {
        window: 40,
        min_calls: 5,
        failure_rate: 0.25,
        slow_call: Duration::from_secs(2),
        slow_rate: 0.5,
        open_for: Duration::from_secs(3),
        open_for_max: Duration::from_secs(120),
        half_open_probes: 3,
        probe_timeout: Duration::from_secs(7),
    };
    assert_eq!(role(&text, "r").breaker, expected);
    fails(&with_line("[roles.r.breaker]\nmin_calls = 30"), 3, &["roles.r.breaker: min_calls must not exceed window"]);
}

#[test]
fn the_daemon_table_has_defaults_never_and_bounds() {
    let base = "[roles.r]\ncommand = [\"a\"]\n";
    let parse = |extra: &str| Config::parse(&format!("{base}{extra}"), "t.toml", Path::new("/"));
    let defaults = parse("").unwrap().daemon;
    assert_eq!(defaults.idle_exit, Some(Duration::from_secs(1800)));
    assert_eq!(defaults.max_in_flight_per_client, 256);
    let set = parse("[daemon]\nidle_exit = \"90s\"\nmax_in_flight_per_client = 8\n").unwrap().daemon;
    assert_eq!((set.idle_exit, set.max_in_flight_per_client), (Some(Duration::from_secs(90)), 8));
    assert_eq!(parse("[daemon]\nidle_exit = \"never\"\n").unwrap().daemon.idle_exit, None);
    let err = parse("[daemon]\nidle_exit = \"soon\"\n").unwrap_err().to_string();
    assert!(err.contains("t.toml:4") && err.contains("daemon.idle_exit") && err.contains("\"never\""), "{err}");
    let err = parse("[daemon]\nmax_in_flight_per_client = 0\n").unwrap_err().to_string();
    assert!(err.contains("daemon.max_in_flight_per_client") && err.contains("from 1 to 65536"), "{err}");
}

#[test]
fn a_role_cost_is_a_price_list() {
    let text = with_line("cost = { per_second = 0.002, per_call = 0.01, usage = { inputTokens = 3e-6 } }");
    let cost = role(&text, "r").cost.expect("priced");
    assert_eq!(cost.per_second, 0.002);
    assert_eq!(cost.per_call, 0.01);
    assert_eq!(cost.usage, BTreeMap::from([("inputTokens".to_owned(), 3e-6)]));
    // 2 s and 1000 input tokens: 0.004 + 0.01 + 0.003.
    let tokens = BTreeMap::from([("inputTokens".to_owned(), 1000.0), ("unpriced".to_owned(), 5.0)]);
    assert!((cost.estimate(2.0, &tokens) - 0.017).abs() < 1e-12);
    assert_eq!(role(&with_line(""), "r").cost, None);
    fails(&with_line("cost = { per_call = -1.0 }"), 3, &["roles.r.cost.per_call", "expected a price of at least 0"]);
    fails(&with_line("[roles.r.cost]\nper_minute = 1.0"), 4, &["per_minute"]);
}

/// The keys docs/config.md documents, per table, from its key tables: the first
/// backquoted cell of each row under a heading naming the table.
fn documented_keys() -> BTreeMap<String, Vec<String>> {
    let doc = include_str!("../../../../docs/config.md");
    let mut tables: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut current = None;
    for line in doc.lines() {
        if let Some(heading) = line.strip_prefix("## Keys of ").or(line.strip_prefix("### Keys of ")) {
            current = Some(heading.trim().trim_matches('`').to_owned());
        } else if line.starts_with('#') {
            current = None;
        } else if let (Some(table), Some(cell)) = (&current, line.strip_prefix("| `")) {
            let key = cell.split('`').next().unwrap_or_default();
            tables.entry(table.clone()).or_default().push(key.to_owned());
        }
    }
    tables
}

#[test]
fn every_key_the_loader_accepts_is_documented_and_no_other() {
    use super::raw::{RawBreaker, RawCluster, RawConfig, RawCost, RawDaemon, RawObserve, RawRlimits, RawRole, RawTls};
    let accepted = BTreeMap::from([
        ("the top level".to_owned(), field_names::<RawConfig>()),
        ("[observe]".to_owned(), field_names::<RawObserve>()),
        ("[daemon]".to_owned(), field_names::<RawDaemon>()),
        ("[cluster]".to_owned(), field_names::<RawCluster>()),
        ("[cluster.tls]".to_owned(), field_names::<RawTls>()),
        ("[roles.NAME]".to_owned(), field_names::<RawRole>()),
        ("[roles.NAME.breaker]".to_owned(), field_names::<RawBreaker>()),
        ("[roles.NAME.cost]".to_owned(), field_names::<RawCost>()),
        ("[roles.NAME.rlimits]".to_owned(), field_names::<RawRlimits>()),
        ("[mcp]".to_owned(), field_names::<super::mcp::RawMcp>()),
        ("[[roles.NAME.tools]]".to_owned(), field_names::<super::mcp::RawTool>()),
    ]);
    assert_eq!(documented_keys(), accepted);
}

/// The field names a `#[derive(Deserialize)]` struct accepts, as serde hands them to a deserializer.
fn field_names<'de, T: serde::Deserialize<'de>>() -> Vec<String> {
    match T::deserialize(FieldProbe) {
        Err(FieldList(fields)) => fields.iter().map(|f| f.to_string()).collect(),
        Ok(_) => panic!("the probe never yields a value"),
    }
}

struct FieldProbe;

#[derive(Debug)]
struct FieldList(&'static [&'static str]);

impl std::fmt::Display for FieldList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "fields {:?}", self.0)
    }
}

impl std::error::Error for FieldList {}

impl serde::de::Error for FieldList {
    fn custom<M: std::fmt::Display>(_: M) -> Self {
        FieldList(&[])
    }
}

impl<'de> serde::Deserializer<'de> for FieldProbe {
    type Error = FieldList;

    fn deserialize_any<V: serde::de::Visitor<'de>>(self, _: V) -> Result<V::Value, FieldList> {
        Err(FieldList(&[]))
    }

    fn deserialize_struct<V: serde::de::Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, FieldList> {
        Err(FieldList(fields))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option unit
        unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
    }
}

#[test]
fn preload_roles_read_script_and_modules_and_default_to_python3_with_initialize() {
    let text =
        "[roles.p]\nprotocol = \"preload\"\nscript = \"tools/summarize.py\"\npreload = [\"json\", \"my_pkg.heavy\"]\n";
    let p = role(text, "p");
    let expected = Protocol::Preload {
        script: PathBuf::from("/srv/proj/tools/summarize.py"),
        modules: argv(&["json", "my_pkg.heavy"]),
    };
    assert_eq!(p.protocol, expected);
    assert_eq!(p.command, argv(&["python3"]));
    assert_eq!(p.handshake, Handshake::Initialize);
    let spawned = p.argv();
    assert_eq!(spawned[..2], ["python3", "-c"]);
    assert_eq!(
        spawned[3..],
        ["--timeout-ms", "30000", "--preload", "json,my_pkg.heavy", "--", "/srv/proj/tools/summarize.py"]
    );
    let own = role(
        "[roles.p]\nprotocol = \"preload\"\nscript = \"/abs/s.py\"\ncommand = [\"/opt/py/bin/python\", \"-X\", \"utf8\"]\n",
        "p",
    );
    assert_eq!(own.argv()[..4], ["/opt/py/bin/python", "-X", "utf8", "-c"]);
}

#[test]
fn preload_keys_are_checked_naming_the_line() {
    let preload = |extra: &str| format!("[roles.r]\nprotocol = \"preload\"\n{extra}\n");
    fails(&preload(""), 1, &["roles.r.script: expected the path of a Python script", "found nothing"]);
    fails(&preload("script = \"\""), 3, &["roles.r.script", "found \"\""]);
    fails(
        &preload("script = \"s.py\"\npreload = [\"ok\", \"os;rm\"]"),
        4,
        &["roles.r.preload: expected a module name", "\"os;rm\""],
    );
    fails(&preload("script = \"s.py\"\nhandshake = \"none\""), 4, &["roles.r.handshake", "always \"initialize\""]);
    fails(&preload("script = \"s.py\"\nshell = true"), 4, &["roles.r.shell", "never a shell"]);
    fails(&with_line("script = \"s.py\""), 3, &["roles.r.script: script is only for preload roles"]);
    fails(&with_line("preload = [\"json\"]"), 3, &["roles.r.preload: preload is only for preload roles"]);
    fails(&with_line("protocol = \"fork\""), 3, &[r#"expected "jsonrpc", "command" or "preload", found "fork""#]);
}

#[test]
fn mcp_section_and_tools_parse_to_exact_values() {
    let text = "[mcp]\nlisten = \"127.0.0.1:8808\"\nseparator = \"-\"\nmax_body = \"64KiB\"\nallowed_origins = [\"http://localhost:*\"]\nsession_idle = \"90s\"\n\n[roles.r]\ncommand = [\"agent\"]\n[[roles.r.tools]]\nname = \"sum\"\ndescription = \"adds\"\nmethod = \"math/sum\"\ninput_schema = { type = \"object\", properties = { a = { type = \"number\" } } }\n[[roles.r.tools]]\nname = \"bare\"\nmethod = \"bare\"\n";
    let config = parse(text).unwrap();
    assert_eq!(config.mcp.listen, Some("127.0.0.1:8808".parse().unwrap()));
    assert_eq!((config.mcp.separator.as_str(), config.mcp.max_body), ("-", 64 * 1024));
    assert_eq!(config.mcp.allowed_origins, argv(&["http://localhost:*"]));
    assert_eq!(config.mcp.session_idle, std::time::Duration::from_secs(90));
    let tools = &config.roles["r"].tools;
    assert_eq!(tools.len(), 2);
    assert_eq!(
        (tools[0].name.as_str(), tools[0].method.as_str(), tools[0].description.as_str()),
        ("sum", "math/sum", "adds")
    );
    assert_eq!(
        serde_json::Value::Object(tools[0].input_schema.clone()),
        serde_json::json!({"type": "object", "properties": {"a": {"type": "number"}}})
    );
    assert_eq!(serde_json::Value::Object(tools[1].input_schema.clone()), serde_json::json!({"type": "object"}));
    let default = parse(&with_line("")).unwrap().mcp;
    assert_eq!((default.listen, default.separator.as_str(), default.max_body), (None, "__", 4 << 20));
    assert_eq!(default.session_idle, std::time::Duration::from_secs(300));
}

#[test]
fn mcp_naming_is_refused_at_load_naming_the_role() {
    fails("[mcp]\nlisten = \"localhost\"\n[roles.r]\ncommand = [\"a\"]\n", 2, &["mcp.listen", "\"localhost\""]);
    fails("[mcp]\nseparator = \"/\"\n[roles.r]\ncommand = [\"a\"]\n", 2, &["mcp.separator"]);
    fails(&with_line("[[roles.r.tools]]\nname = \"a b\"\nmethod = \"m\""), 4, &["roles.r.tools[0].name", "\"a b\""]);
    fails(&with_line("[[roles.r.tools]]\nname = \"t\""), 3, &["roles.r.tools[0].method", "found nothing"]);
    fails(
        &with_line("[[roles.r.tools]]\nname = \"t\"\nmethod = \"m\"\n[[roles.r.tools]]\nname = \"t\"\nmethod = \"n\""),
        6,
        &["roles.r.tools[1].name", "already used"],
    );
    fails(
        &with_line("[[roles.r.tools]]\nname = \"t\"\nmethod = \"m\"\ninput_schema = { type = \"string\" }"),
        6,
        &["input_schema"],
    );
    fails(
        "[roles.m]\ncommand = [\"a\"]\nhandshake = \"mcp\"\n[[roles.m.tools]]\nname = \"t\"\nmethod = \"m\"\n",
        4,
        &["roles.m.tools", "leave tools out"],
    );
    // `a__b` would be ambiguous with role `a` offering `b__c`: refused, naming the role.
    fails("[roles.a__b]\ncommand = [\"a\"]\nhandshake = \"mcp\"\n", 1, &["roles.a__b", "separator \"__\""]);
    fails(&with_line("share = \"private\""), 3, &["roles.r.share", r#"expected "pool" or "session", found "private""#]);
    assert_eq!(role(&with_line("share = \"session\""), "r").share, super::Share::Session);
    assert_eq!(role(&with_line(""), "r").share, super::Share::Pool);
    // A role the gateway does not offer may use any valid name.
    assert!(parse("[roles.a__b]\ncommand = [\"a\"]\n").is_ok());
}
