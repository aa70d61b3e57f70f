//! `skep ls`: this user's running orchestrators, found by their observe
//! sockets; sockets nobody listens on are removed on the way.

use std::process::ExitCode;

use serde_json::json;

use crate::observer::{Found, agent_total, discover};
use crate::output::emit;
use crate::runtime::runtime;

/// List this user's running orchestrators (those serving an observe socket).
///
/// Sockets nobody listens on any more are removed.
#[derive(Debug, clap::Args)]
pub struct LsArgs {
    /// One JSON array instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// Lists the orchestrators.
pub fn run(args: LsArgs) -> anyhow::Result<ExitCode> {
    let found = runtime()?.block_on(discover())?;
    if args.json {
        let list: Vec<_> = found.iter().map(|f| json!({ "socket": f.socket, "info": f.info })).collect();
        emit(&serde_json::Value::Array(list).to_string())?;
        return Ok(ExitCode::SUCCESS);
    }
    for line in table(&found) {
        emit(&line)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn table(found: &[Found]) -> Vec<String> {
    let mut lines = vec![format!(
        "{:<8} {:>6} {:>6} {:>6} {:>8}  {:<40} {}",
        "PID", "ROLES", "AGENTS", "BUSY", "REMOTE", "SOCKET", "CONFIG"
    )];
    for f in found {
        let info = &f.info;
        lines.push(format!(
            "{:<8} {:>6} {:>6} {:>6} {:>8}  {:<40} {}",
            info["pid"].as_u64().unwrap_or(0),
            info["roles"].as_u64().unwrap_or(0),
            agent_total(info),
            info["agents"]["busy"].as_u64().unwrap_or(0),
            remote(&info["remote"]),
            f.socket.display(),
            info["config"].as_str().unwrap_or("(built-in demo)"),
        ));
    }
    lines
}

/// Remote workers and their agents ("2w/8a"); `-` for an orchestrator without a cluster.
fn remote(counts: &serde_json::Value) -> String {
    match (counts["workers"].as_u64(), counts["agents"].as_u64()) {
        (Some(workers), Some(agents)) => format!("{workers}w/{agents}a"),
        _ => "-".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_row_per_orchestrator() {
        let info = json!({"pid": 42, "roles": 2, "config": "/p/skep.toml",
            "agents": {"starting": 1, "idle": 3, "busy": 2, "stopping": 0}});
        let lines = table(&[Found { socket: "/run/skep/42.sock".into(), info }]);
        assert_eq!(lines.len(), 2);
        let row: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(row, ["42", "2", "6", "2", "-", "/run/skep/42.sock", "/p/skep.toml"]);
        let info = json!({"pid": 43, "roles": 1, "config": "/p/skep.toml", "agents": {"idle": 0},
            "remote": {"workers": 2, "agents": 8}});
        let lines = table(&[Found { socket: "/run/skep/43.sock".into(), info }]);
        assert_eq!(lines[1].split_whitespace().nth(4), Some("2w/8a"));
    }
}
