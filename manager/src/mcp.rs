//! `skep mcp`: MCP over stdio for clients that only spawn stdio servers. A
//! thin relay: it attaches to the config's daemon (starting it on first use),
//! opens one MCP session on the daemon's MCP socket, and copies bytes both
//! ways (newline-delimited JSON-RPC, MCP's stdio framing), so every session
//! shares the daemon's warm servers. stdout is the protocol: the relay writes
//! the daemon's bytes there and nothing else; logs go to stderr.
//!
//! `skep mcp --print-config` prints the `mcpServers` entries for both
//! transports instead (the one place this module uses `output::emit`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use serde_json::json;
use skep_service::daemon::DaemonPaths;
use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;

use crate::daemon::Which;
use crate::daemon::attach::{attach, connect, control, target};
use crate::output::emit;
use crate::runtime::runtime;

/// Serve MCP on stdin/stdout through the config's daemon (docs/mcp.md).
///
/// Point an MCP client's stdio server entry at this command; every session
/// shares the daemon's warm MCP servers. `--print-config` prints the entries
/// to paste into a client's `mcpServers`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  skep mcp --print-config                    # the mcpServers JSON for ./skep.toml's daemon
  skep mcp --config /abs/path/skep.toml      # what an MCP client runs (stdio)")]
pub struct McpArgs {
    #[command(flatten)]
    which: Which,
    /// Print the `mcpServers` JSON for this config (stdio, and HTTP when `[mcp] listen` is set) and exit.
    #[arg(long)]
    print_config: bool,
}

/// Runs the relay, or prints the client config.
pub fn run(args: McpArgs) -> anyhow::Result<ExitCode> {
    let config = target(args.which.config.as_deref())?;
    let paths = DaemonPaths::for_config(config.as_deref());
    let rt = runtime()?;
    let result = match args.print_config {
        true => rt.block_on(print_config(config, &paths)),
        false => rt.block_on(relay(config, &paths)),
    };
    // A read of stdin may still be parked on a blocking thread: do not wait for it.
    rt.shutdown_background();
    result
}

async fn relay(config: Option<PathBuf>, paths: &DaemonPaths) -> anyhow::Result<ExitCode> {
    // Held for the session's life: the daemon sees a client and does not idle out under it.
    let _control = attach(config.as_deref()).await?;
    let stream = UnixStream::connect(&paths.mcp_socket)
        .await
        .with_context(|| format!("cannot open an MCP session on {}", paths.mcp_socket.display()))?;
    let (mut from_daemon, mut to_daemon) = stream.into_split();
    let upstream = async {
        let copied = tokio::io::copy(&mut tokio::io::stdin(), &mut to_daemon).await;
        // Our client closed stdin: the session ends once the daemon has answered.
        let _ = to_daemon.shutdown().await;
        copied
    };
    let downstream = async {
        let mut stdout = tokio::io::stdout();
        let copied = tokio::io::copy(&mut from_daemon, &mut stdout).await;
        let _ = stdout.flush().await;
        copied
    };
    tokio::pin!(downstream);
    tokio::select! {
        // The daemon ended the session (or stopped), or our client stopped reading.
        copied = &mut downstream => {
            copied.context("the MCP session ended")?;
        }
        copied = upstream => {
            copied.context("cannot read the MCP client's stdin")?;
            downstream.await.context("the MCP session ended")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn print_config(config: Option<PathBuf>, paths: &DaemonPaths) -> anyhow::Result<ExitCode> {
    let exe = std::env::current_exe().context("cannot find skep's own executable")?;
    let mut args = vec!["mcp".to_owned()];
    if let Some(config) = &config {
        args.extend(["--config".to_owned(), config.display().to_string()]);
    }
    let mut servers = serde_json::Map::new();
    servers.insert("skep".to_owned(), json!({ "command": exe, "args": args }));
    let loaded = match &config {
        Some(path) => skep_swarm::Config::load(path)?,
        None => skep_swarm::Config::default(),
    };
    if let Some(listen) = loaded.mcp.listen {
        // A running daemon knows the port it bound (`listen` may ask for port 0).
        let running = match connect(&paths.socket).await {
            Ok(client) => control(&client, "daemon/status").await.ok(),
            Err(_) => None,
        };
        let url = running
            .and_then(|s| s["mcp"]["http"].as_str().map(str::to_owned))
            .unwrap_or_else(|| format!("http://{listen}/mcp"));
        let token = skep_service::mcp::load_or_create_token(&paths.mcp_token)?;
        let headers = json!({ "Authorization": format!("Bearer {token}") });
        servers.insert("skep-http".to_owned(), json!({ "type": "http", "url": url, "headers": headers }));
        eprintln!("skep: the bearer token is kept in {} (mode 0600)", paths.mcp_token.display());
    }
    emit(&serde_json::to_string_pretty(&json!({ "mcpServers": servers }))?)?;
    Ok(ExitCode::SUCCESS)
}
