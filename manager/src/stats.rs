//! `skep stats`: a table per role and agent from the config's daemon (or an
//! orchestrator's observe socket); `--json` for scripts, `--watch` to refresh
//! in place.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use serde_json::{Value, json};

use skep_service::daemon::DaemonPaths;

use crate::daemon::attach::{attach, no_daemon, target};
use crate::observer::{connect, fetch, resolve};
use crate::output::emit;
use crate::runtime::runtime;

/// Show per role and agent: state, calls, errors, cancelled calls, p50/p99, cache hit rate, memory, CPU,
/// breaker, and agents recycled by cause.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  skep stats                      # the daemon of ./skep.toml (or the nearest one up), else the demo's
  skep stats --attach /run/user/1000/skep/4242.sock --json
  skep stats --no-daemon          # the only running orchestrator (see `skep ls`)
  skep stats --watch")]
pub struct StatsArgs {
    /// An orchestrator's observe socket (or a daemon's control socket; see `skep ls`).
    #[arg(long, value_name = "SOCKET", conflicts_with_all = ["config", "no_daemon"])]
    pub attach: Option<PathBuf>,
    /// The config whose daemon to show (started if none runs).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Show the only running orchestrator (see `skep ls`) rather than a daemon (also SKEP_NO_DAEMON=1).
    #[arg(long)]
    pub no_daemon: bool,
    /// One JSON object per snapshot, for scripts.
    #[arg(long)]
    pub json: bool,
    /// Refresh in place until the orchestrator ends.
    #[arg(long)]
    pub watch: bool,
}

/// How often `--watch` refreshes.
const WATCH_EVERY: Duration = Duration::from_millis(500);
/// Clear the screen and go home: each frame replaces the previous one.
const CLEAR: &str = "\x1b[H\x1b[2J";

/// Prints the table once, or until the orchestrator goes away with `--watch`.
pub fn run(args: StatsArgs) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(stats(args))
}

async fn stats(args: StatsArgs) -> anyhow::Result<ExitCode> {
    let (client, socket) = match args.attach {
        Some(socket) => (connect(&socket).await?, socket),
        None if no_daemon(args.no_daemon) => {
            let socket = resolve(None).await?;
            (connect(&socket).await?, socket)
        }
        None => {
            let config = target(args.config.as_deref())?;
            (attach(config.as_deref()).await?, DaemonPaths::for_config(config.as_deref()).socket)
        }
    };
    loop {
        let snapshot =
            async { anyhow::Ok((fetch(&client, "swarm/stats").await?, fetch(&client, "swarm/agents").await?)) };
        let (stats, agents) = match snapshot.await {
            Ok(both) => both,
            Err(e) if args.watch && !client.is_connected() => {
                emit(&format!("{CLEAR}orchestrator ended ({}: {e:#})", socket.display()))?;
                return Ok(ExitCode::SUCCESS);
            }
            Err(e) => return Err(e).context("cannot read the orchestrator's stats"),
        };
        if args.json {
            emit(&json!({ "stats": stats, "agents": agents }).to_string())?;
        } else {
            let frame = render(&stats, &agents).join("\n");
            emit(&if args.watch { format!("{CLEAR}{frame}") } else { frame })?;
        }
        if !args.watch {
            return Ok(ExitCode::SUCCESS);
        }
        tokio::select! {
            () = tokio::time::sleep(WATCH_EVERY) => {}
            () = client.disconnected() => {}
        }
    }
}

/// The table: one row per role, then one per agent of it.
pub fn render(stats: &Value, agents: &Value) -> Vec<String> {
    let mut lines = vec![format!(
        "{:<16} {:>7} {:>7} {:>6} {:>6} {:>8} {:>8} {:>5} {:>10} {:>5}  {:<8}  {}",
        "ROLE/AGENT", "STATE", "CALLS", "ERRORS", "CANCEL", "P50", "P99", "CACHE", "RSS", "CPU", "BREAKER", "RECYCLED"
    )];
    for role in stats["roles"].as_array().into_iter().flatten() {
        let name = role["role"].as_str().unwrap_or("?");
        let errors: u64 = role["errors"].as_object().into_iter().flatten().filter_map(|(_, n)| n.as_u64()).sum();
        let counts = &role["agents"];
        let live = ["idle", "busy"].iter().map(|k| counts[k].as_u64().unwrap_or(0)).sum::<u64>();
        let state = if role["failed"].as_bool() == Some(true) { "FAILED".to_owned() } else { format!("{live} up") };
        lines.push(format!(
            "{:<16} {:>7} {:>7} {:>6} {:>6} {:>8} {:>8} {:>5} {:>10} {:>5}  {:<8}  {}",
            name,
            state,
            role["calls"].as_u64().unwrap_or(0),
            errors,
            role["cancelled"].as_u64().unwrap_or(0),
            micros(role["latencyUs"]["p50"].as_u64().unwrap_or(0)),
            micros(role["latencyUs"]["p99"].as_u64().unwrap_or(0)),
            hit_rate(&role["cache"]),
            size(&role["rssBytes"]),
            percent(&role["cpuPercent"]),
            role["breaker"]["state"].as_str().unwrap_or("?"),
            recycled(&role["recycled"]),
        ));
        for agent in agents.as_array().into_iter().flatten().filter(|a| a["role"] == name) {
            let mut line = format!(
                "  {:<14} {:>7} {:>7} {:>6} {:>6} {:>8} {:>8} {:>5} {:>10} {:>5}  pid {}",
                agent["id"].as_str().unwrap_or("?"),
                agent["state"].as_str().unwrap_or("?"),
                agent["calls"].as_u64().unwrap_or(0),
                "",
                "",
                "",
                "",
                "",
                size(&agent["rssBytes"]),
                percent(&agent["cpuPercent"]),
                agent["pid"].as_u64().unwrap_or(0),
            );
            if let Some(reason) = agent["recycled"].as_str() {
                line.push_str(&format!("  recycled: {reason}"));
            }
            lines.push(line);
        }
    }
    lines.extend(render_workers(&stats["workers"]));
    lines.extend(render_mcp(&stats["mcp"]));
    lines
}

/// A daemon's MCP sessions (transport, age, calls, the agents of their
/// own), then per role offering tools the processes serving the sessions;
/// nothing from an orchestrator without a gateway.
pub fn render_mcp(mcp: &Value) -> Vec<String> {
    if !mcp.is_object() {
        return Vec::new();
    }
    let session_row = |[id, transport, age, calls, in_flight, agents]: [&str; 6]| {
        format!("{id:<24} {transport:<9} {age:>8} {calls:>7} {in_flight:>9}  {agents}")
    };
    let mut lines =
        vec![String::new(), session_row(["MCP SESSION", "TRANSPORT", "AGE", "CALLS", "IN-FLIGHT", "OWN AGENTS"])];
    let sessions = mcp["open"].as_array().map_or(&[][..], Vec::as_slice);
    if sessions.is_empty() {
        lines.push("(no MCP session open)".to_owned());
    }
    let text = |v: &Value| v.as_u64().map_or_else(|| "?".to_owned(), |n| n.to_string());
    let pid_list = |pids: &mut dyn Iterator<Item = String>| {
        let list: Vec<String> = pids.collect();
        if list.is_empty() { "-".to_owned() } else { list.join(", ") }
    };
    for session in sessions {
        let age = Duration::from_secs(session["ageMs"].as_u64().unwrap_or(0) / 1000);
        let mut own = (session["agents"].as_array().into_iter().flatten())
            .map(|a| format!("{} pid {}", a["role"].as_str().unwrap_or("?"), text(&a["pid"])));
        lines.push(session_row([
            session["id"].as_str().unwrap_or("?"),
            session["transport"].as_str().unwrap_or("?"),
            &humantime::format_duration(age).to_string(),
            &text(&session["calls"]),
            &text(&session["inFlight"]),
            &pid_list(&mut own),
        ]));
    }
    lines.push(String::new());
    lines.push(format!("{:<24} {:<9}  {}", "MCP ROLE", "SHARE", "SERVED BY"));
    for role in mcp["roles"].as_array().into_iter().flatten() {
        let mut pids = (role["pids"].as_array().into_iter().flatten()).map(|p| format!("pid {}", text(p)));
        lines.push(format!(
            "{:<24} {:<9}  {}",
            role["role"].as_str().unwrap_or("?"),
            role["share"].as_str().unwrap_or("?"),
            pid_list(&mut pids)
        ));
    }
    lines
}

/// The remote workers an orchestrator hears from, each with its agents as its
/// last heartbeat listed them; nothing without a cluster.
pub fn render_workers(workers: &Value) -> Vec<String> {
    let Some(workers) = workers.as_array() else { return Vec::new() };
    let row = |[name, host, pid, state, calls, load, capacity, age]: [&str; 8]| {
        format!("{name:<24} {host:<12} {pid:>8} {state:>9} {calls:>7} {load:>9} {capacity:>8} {age:>10}")
    };
    let header = ["WORKER/AGENT", "HOST", "PID", "STATE", "CALLS", "IN-FLIGHT", "CAPACITY", "HEARTBEAT"];
    let mut lines = vec![String::new(), row(header)];
    if workers.is_empty() {
        lines.push("(no remote worker heard from)".to_owned());
    }
    let text = |v: &Value| v.as_u64().map_or_else(|| "?".to_owned(), |n| n.to_string());
    for worker in workers {
        let agents = worker["agents"].as_array().map_or(&[][..], Vec::as_slice);
        let calls: u64 = agents.iter().filter_map(|a| a["calls"].as_u64()).sum();
        let age = format!("{}ms ago", text(&worker["ageMs"]));
        lines.push(row([
            worker["id"].as_str().unwrap_or("?"),
            worker["host"].as_str().unwrap_or("?"),
            &text(&worker["pid"]),
            if worker["draining"] == true { "draining" } else { "up" },
            &calls.to_string(),
            &text(&worker["load"]),
            &text(&worker["capacity"]),
            &age,
        ]));
        for agent in agents {
            lines.push(row([
                &format!("  {}", agent["id"].as_str().unwrap_or("?")),
                "",
                &text(&agent["pid"]),
                agent["state"].as_str().unwrap_or("?"),
                &text(&agent["calls"]),
                &text(&agent["inFlight"]),
                "",
                "",
            ]));
        }
    }
    lines
}

/// `1.2ms`, `850µs`, `3.4s`; `-` before the first call.
pub fn micros(us: u64) -> String {
    match us {
        0 => "-".to_owned(),
        1..1_000 => format!("{us}µs"),
        1_000..1_000_000 => format!("{:.1}ms", us as f64 / 1e3),
        _ => format!("{:.1}s", us as f64 / 1e6),
    }
}

/// Resident memory as "150.0 MiB"; `-` before the first sample (a role's sum
/// is 0 until one of its agents was sampled: no live process has no memory).
pub fn size(bytes: &Value) -> String {
    match bytes.as_u64() {
        None | Some(0) => "-".to_owned(),
        Some(b) => bytesize::ByteSize::b(b).display().iec().to_string(),
    }
}

/// CPU use as "12%" of one CPU; `-` before there are two samples.
pub fn percent(cpu: &Value) -> String {
    // `max` keeps a sum of nothing (-0.0) from printing as "-0%".
    cpu.as_f64().map_or_else(|| "-".to_owned(), |p| format!("{:.0}%", p.max(0.0) + 0.0))
}

/// Agents replaced, by cause ("memory 2, calls 1"); `-` when none was.
fn recycled(counts: &Value) -> String {
    let causes = ["calls", "lifetime", "memory", "crash", "noise"];
    let parts: Vec<String> = (causes.iter())
        .filter_map(|cause| counts[cause].as_u64().filter(|n| *n > 0).map(|n| format!("{cause} {n}")))
        .collect();
    if parts.is_empty() { "-".to_owned() } else { parts.join(", ") }
}

/// Calls answered without an agent call of their own (a stored result, or
/// joining an identical call in flight) out of all cacheable calls.
fn hit_rate(cache: &Value) -> String {
    let count = |key: &str| cache[key].as_u64().unwrap_or(0);
    let (hits, misses) = (count("hits") + count("coalesced"), count("misses"));
    match (cache.is_null(), hits + misses) {
        (true, _) => "-".to_owned(),
        (false, 0) => "0%".to_owned(),
        (false, n) => format!("{}%", hits * 100 / n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unsampled_role_shows_dashes_and_never_minus_zero() {
        assert_eq!(size(&json!(0)), "-");
        assert_eq!(size(&Value::Null), "-");
        assert_eq!(percent(&json!(-0.0)), "0%");
        assert_eq!(percent(&json!(12.4)), "12%");
    }

    #[test]
    fn table_has_a_row_per_role_and_agent() {
        let stats = json!({"roles": [{"role": "rev", "agents": {"idle": 1, "busy": 1}, "calls": 10, "cancelled": 3,
            "errors": {"-32001": 2}, "latencyUs": {"p50": 1500, "p99": 2_500_000}, "failed": false,
            "breaker": {"state": "halfOpen"}, "cache": {"hits": 2, "coalesced": 1, "misses": 1},
            "rssBytes": 3 << 29, "cpuPercent": 12.4,
            "recycled": {"calls": 1, "lifetime": 0, "memory": 2, "crash": 0, "noise": 0}}]});
        let agents = json!([{"id": "rev/1", "role": "rev", "state": "busy", "calls": 6, "pid": 77,
                "rssBytes": 1 << 30, "cpuPercent": 12.4, "recycled": null},
            {"id": "rev/2", "role": "rev", "state": "recycling", "calls": 3, "pid": 79, "rssBytes": 1 << 29,
                "cpuPercent": null, "recycled": "RSS 512.0 MiB over max_rss 500.0 MiB"},
            {"id": "other/1", "role": "other", "state": "idle", "calls": 0, "pid": 78}]);
        let lines = render(&stats, &agents);
        assert_eq!(lines.len(), 4, "{lines:#?}");
        let role: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(
            role,
            [
                "rev", "2", "up", "10", "2", "3", "1.5ms", "2.5s", "75%", "1.5", "GiB", "12%", "halfOpen", "calls",
                "1,", "memory", "2"
            ]
        );
        let agent: Vec<&str> = lines[2].split_whitespace().collect();
        assert_eq!(agent, ["rev/1", "busy", "6", "1.0", "GiB", "12%", "pid", "77"]);
        assert!(lines[3].ends_with("pid 79  recycled: RSS 512.0 MiB over max_rss 500.0 MiB"), "{}", lines[3]);
        assert_eq!(lines[3].split_whitespace().nth(5), Some("-"), "no CPU figure before two samples");
    }

    #[test]
    fn remote_workers_follow_the_roles_with_their_agents() {
        let stats = json!({"roles": [], "workers": [{"id": "h-42", "host": "h", "pid": 42, "draining": false,
            "ageMs": 310, "intervalMs": 1000, "capacity": 4, "load": 1, "roles": [],
            "agents": [{"id": "echo/1", "role": "echo", "pid": 43, "state": "busy", "calls": 5, "inFlight": 1}]}]});
        let lines = render(&stats, &json!([]));
        let rows: Vec<Vec<&str>> = lines.iter().map(|l| l.split_whitespace().collect()).collect();
        assert_eq!(rows[3], ["h-42", "h", "42", "up", "5", "1", "4", "310ms", "ago"]);
        assert_eq!(rows[4], ["echo/1", "43", "busy", "5", "1"]);
        assert_eq!(
            render(&json!({"roles": [], "workers": []}), &json!([])).last().map(String::as_str),
            Some("(no remote worker heard from)")
        );
        assert_eq!(render(&json!({"roles": []}), &json!([])).len(), 1, "no cluster, no workers section");
    }

    #[test]
    fn mcp_sessions_and_the_agents_serving_them_follow_the_roles() {
        let mcp = json!({"open": [
                {"id": "3f2a9c1b", "transport": "http", "ageMs": 61_500, "calls": 4, "inFlight": 1,
                    "agents": [{"role": "solo", "pid": 4242}]},
                {"id": "stdio-3", "transport": "stdio", "ageMs": 900, "calls": 0, "inFlight": 0, "agents": []}],
            "roles": [{"role": "state", "share": "pool", "pids": [100, 101]},
                {"role": "solo", "share": "session", "pids": [4242]},
                {"role": "words", "share": "pool", "pids": []}]});
        let lines = render(&json!({"roles": [], "mcp": mcp}), &json!([]));
        let rows: Vec<Vec<&str>> = lines.iter().map(|l| l.split_whitespace().collect()).collect();
        assert_eq!(rows[3], ["3f2a9c1b", "http", "1m", "1s", "4", "1", "solo", "pid", "4242"]);
        assert_eq!(rows[4], ["stdio-3", "stdio", "0s", "0", "0", "-"]);
        assert_eq!(rows[6], ["MCP", "ROLE", "SHARE", "SERVED", "BY"]);
        assert_eq!(rows[7], ["state", "pool", "pid", "100,", "pid", "101"]);
        assert_eq!(rows[8], ["solo", "session", "pid", "4242"]);
        assert_eq!(rows[9], ["words", "pool", "-"]);
        let idle = render_mcp(&json!({"open": [], "roles": []}));
        assert_eq!(idle[2], "(no MCP session open)");
        assert!(render_mcp(&Value::Null).is_empty(), "no gateway, no MCP section");
    }

    #[test]
    fn durations_read_at_a_glance() {
        assert_eq!([micros(0), micros(999), micros(1_000), micros(59_000_000)], ["-", "999µs", "1.0ms", "59.0s"]);
        assert_eq!(hit_rate(&Value::Null), "-");
    }
}
