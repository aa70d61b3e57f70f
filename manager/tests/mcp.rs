//! The MCP gateway with real clients and real servers: the official
//! TypeScript SDK client and the official Python SDK, over `skep mcp` (stdio,
//! spawned by the SDKs with their stripped default environment) and over
//! Streamable HTTP, against a daemon fronting two published MCP servers from
//! npm (filesystem, memory; tests/mcp-clients/package-lock.json), one we
//! wrote (tests/mcp-clients/state-server.mjs: per-process state, its pid, a
//! slow tool) and a plain agent offered as a tool.
//!
//! Every world runs with exactly the environment MCP clients give (HOME,
//! PATH, USER, SHELL, TERM; no XDG_RUNTIME_DIR), so the daemon the relays
//! start and the one `skep status` finds are the same by construction of
//! where sockets live, not by a variable a client strips.

#![allow(clippy::unwrap_used)] // a failed unwrap here is a failed test

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{dead, poll};

mod support;

const SKEP: &str = env!("CARGO_BIN_EXE_skep");
/// Bound on anything a test waits for, the clients' whole scenarios included.
const LIMIT: Duration = Duration::from_secs(120);

/// The test clients and servers, installed from their lock file (by .ci/test, or here when missing).
fn clients_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mcp-clients");
    if !dir.join("node_modules/@modelcontextprotocol/sdk").exists() {
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .status()
            .expect("npm runs (Node and npm are needed for this test)");
        assert!(status.success(), "npm ci in {} failed", dir.display());
    }
    dir
}

/// A test's private world: a HOME, a skep.toml, a directory the filesystem
/// server may see, and the daemon (stopped, or killed, on drop).
struct World {
    root: PathBuf,
    _dir: tempfile::TempDir,
}

impl World {
    fn new(name: &str, extra_roles: &str) -> World {
        let clients = clients_dir();
        let dir = tempfile::Builder::new().prefix(&format!("skep-mcp-{name}-")).tempdir().expect("scratch");
        let root = dir.path().canonicalize().expect("canonical scratch");
        for sub in ["home", "files"] {
            std::fs::create_dir(root.join(sub)).expect("scratch dirs");
        }
        let node = |script: &str| format!("[\"node\", \"{}\"]", clients.join(script).display());
        let config = format!(
            r#"[mcp]
listen = "127.0.0.1:0"
max_body = "64KiB"

[roles.state]
command = {state}
handshake = "mcp"
max_agents = 1
concurrency = 4

[roles.fs]
command = {fs_server}
handshake = "mcp"

[roles.memory]
command = {memory}
handshake = "mcp"
env = {{ MEMORY_FILE_PATH = "{root}/memory.jsonl" }}

[roles.words]
command = ["{SKEP}", "agent", "demo"]
[[roles.words.tools]]
name = "count"
description = "Counts words"
method = "wordcount"
input_schema = {{ type = "object", properties = {{ text = {{ type = "string" }} }} }}
{extra_roles}"#,
            state = node("state-server.mjs"),
            fs_server = node("node_modules/@modelcontextprotocol/server-filesystem/dist/index.js")
                .replace("\"]", &format!("\", \"{}\"]", root.join("files").display())),
            memory = node("node_modules/@modelcontextprotocol/server-memory/dist/index.js"),
            root = root.display(),
        );
        std::fs::write(root.join("skep.toml"), config).expect("config written");
        World { root, _dir: dir }
    }

    fn config(&self) -> PathBuf {
        self.root.join("skep.toml")
    }

    /// `program` with exactly what MCP clients pass their servers (and so
    /// what the SDKs pass `skep mcp`): HOME, PATH, USER, SHELL, TERM.
    fn stripped(&self, program: &str) -> Command {
        let mut command = Command::new(program);
        command.env_clear().env("HOME", self.root.join("home")).env("TERM", "dumb").env("SHELL", "/bin/sh");
        for var in ["PATH", "USER"] {
            if let Some(value) = std::env::var_os(var) {
                command.env(var, value);
            }
        }
        command.current_dir(&self.root).stdin(Stdio::null());
        command
    }

    fn skep(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        let config = self.config().display().to_string();
        all.extend(["--config", &config]);
        let out = bounded(self.stripped(SKEP).args(&all));
        serde_json::from_str(&out).unwrap_or(Value::String(out))
    }

    fn status(&self) -> Value {
        self.skep(&["status", "--json"])
    }

    /// The daemon's HTTP endpoint and bearer token.
    fn http(&self) -> (String, String) {
        let status = self.status();
        let url = status["daemon"]["mcp"]["http"].as_str().expect("an HTTP endpoint").to_owned();
        let token = std::fs::read_to_string(status["daemon"]["mcp"]["token"].as_str().expect("a token file")).unwrap();
        (url, token.trim().to_owned())
    }

    fn agent_pids(&self, role: &str) -> Vec<u64> {
        let status = self.status();
        let agents = status["agents"].as_array().expect("agents").iter();
        agents.filter(|a| a["role"] == role && a["pid"] != 0).map(|a| a["pid"].as_u64().unwrap()).collect()
    }

    fn daemon_pid(&self) -> u32 {
        self.status()["daemon"]["pid"].as_u64().expect("a daemon pid") as u32
    }

    /// The official TypeScript client's `scenario` over `transport`, its report.
    fn ts(&self, scenario: &str, transport: &str) -> Value {
        let (target, extra) = self.target(transport);
        let script = clients_dir().join("ts-client.mjs").display().to_string();
        report(&bounded(self.stripped("node").args([&script, scenario, transport, &target, &extra])))
    }

    /// The official Python client over `transport`, its report.
    fn py(&self, transport: &str) -> Value {
        let (target, extra) = self.target(transport);
        let script = clients_dir().join("py-client.py").display().to_string();
        report(&bounded(self.stripped(&python()).args([&script, transport, &target, &extra])))
    }

    fn target(&self, transport: &str) -> (String, String) {
        match transport {
            "stdio" => (SKEP.to_owned(), self.config().display().to_string()),
            _ => self.http(),
        }
    }
}

impl Drop for World {
    fn drop(&mut self) {
        let pid = self.status()["daemon"]["pid"].as_u64();
        let _ = self.stripped(SKEP).args(["down", "--config"]).arg(self.config()).stderr(Stdio::null()).status();
        if let Some(pid) = pid.filter(|&p| !dead(p as u32)) {
            // SAFETY: a plain kill of the pid this test's daemon reported.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
    }
}

/// The Python interpreter itself (not a pyenv shim, which needs variables
/// the stripped env lacks), with the official SDK (installed by .ci/test, or
/// here when missing).
fn python() -> String {
    let out = Command::new("python3").args(["-c", "import sys; print(sys.executable)"]).output().expect("python3");
    let python = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    if !Command::new(&python).args(["-c", "import mcp"]).stderr(Stdio::null()).status().unwrap().success() {
        let pip = [&python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "mcp==2.3.0"];
        let status = Command::new(pip[0]).args(&pip[1..]).status().expect("pip runs");
        assert!(status.success(), "pip install mcp failed");
    }
    python
}

/// Runs `command` to its end within [`LIMIT`] (killed past it); its stdout.
fn bounded(command: &mut Command) -> String {
    let mut child = command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawns");
    let (mut stdout, mut stderr) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let err = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let out = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{command:?} did not finish within {LIMIT:?}: {}", err.join().unwrap());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let (out, err) = (out.join().unwrap(), err.join().unwrap());
    // `skep status` exits 3 when no daemon runs; callers judge the output.
    assert!(status.success() || status.code() == Some(3), "{command:?} failed ({status}): {err}");
    out
}

fn report(out: &str) -> Value {
    let line = out.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| panic!("no JSON report ({e}): {out:?}"))
}

/// Live `skep mcp` relays for `config`.
fn relays(config: &Path) -> Vec<u32> {
    let config = config.display().to_string();
    let pids = std::fs::read_dir("/proc").unwrap().filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok());
    pids.filter(|&pid| {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
        args.get(1) == Some(&b"mcp".as_slice()) && args.contains(&config.as_bytes()) && !dead(pid)
    })
    .collect()
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

/// What every scenario of the TypeScript client must have seen, on either transport.
fn check_main_scenario(world: &World, r: &Value) {
    assert_eq!(r["server"]["name"], "skep");
    let tools: Vec<&str> = r["tools"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
    for expected in
        ["state__whoami", "state__slow", "fs__list_allowed_directories", "memory__read_graph", "words__count"]
    {
        assert!(tools.contains(&expected), "{expected} missing from tools/list: {tools:?}");
    }
    assert!(r["fs"].as_str().unwrap().contains(&world.root.join("files").display().to_string()), "{r}");
    assert_eq!(r["memory"], json!({"entities": [], "relations": []}));
    assert_eq!(r["words"], json!({"words": 3}));
    // Two sessions share the pooled server: one process, one state.
    assert_eq!(r["whoA"]["pid"], r["whoB"]["pid"], "{r}");
    assert_eq!(r["recallB"]["value"], "from-a");
    // The server's progress reached the session that made the call, in order.
    // (The SDK client may drop the last one when it lands just before the
    // answer: the SDK handles notifications a tick after responses. The raw
    // stdio test below checks that every one is sent, before the answer.)
    let progress = r["progress"].as_array().unwrap();
    assert!(!progress.is_empty() && progress.iter().zip([1, 2, 3]).all(|(p, n)| *p == n), "{r}");
    // The client's cancel reached the server's own call.
    assert_eq!(r["cancelledUpstream"], true, "{r}");
    // Killed mid-call: a tool error naming the server and why, then a fresh one.
    assert_eq!(r["killed"]["isError"], true, "{r}");
    let why = r["killed"]["text"].as_str().unwrap();
    assert!(why.contains("server state") && why.contains("crashed") && why.contains("SIGKILL"), "{why}");
    assert_ne!(r["recovered"]["pid"], r["whoA"]["pid"]);
    assert!(dead(r["whoA"]["pid"].as_u64().unwrap() as u32), "the killed server is gone");
    assert_eq!(world.agent_pids("state"), vec![r["recovered"]["pid"].as_u64().unwrap()], "the pool is back to one");
    assert_eq!(r["unknownTool"], json!({"error": -32602}));
}

#[test]
fn the_official_typescript_client_over_the_stdio_relay_with_a_stripped_environment() {
    let world = World::new("ts-stdio", "");
    // The relay starts the daemon on first use, with nothing but a stripped environment to find it by.
    let r = world.ts("main", "stdio");
    check_main_scenario(&world, &r);
    let daemon = world.daemon_pid();
    assert!(!dead(daemon), "the relay's daemon is the one `skep status` finds");
    poll("every relay to exit with its client", || relays(&world.config()).is_empty());
}

#[test]
fn the_official_typescript_client_over_streamable_http() {
    let world = World::new("ts-http", "");
    world.skep(&["up"]);
    let r = world.ts("main", "http");
    check_main_scenario(&world, &r);
}

/// A server's `tools/list_changed` (and `prompts/list_changed`) reaches every
/// session, on `transport`, and the next list is the server's new one, not
/// skep's cached one.
fn check_list_changed(transport: &str) {
    let world = World::new(&format!("changed-{transport}"), "");
    world.skep(&["up"]);
    let r = world.ts("listchanged", transport);
    assert_eq!(r["capability"], json!(true), "{r}");
    let before = json!(["state__announce", "state__recall", "state__remember", "state__slow", "state__whoami"]);
    assert_eq!(r["before"], before, "{r}");
    let after =
        json!(["state__announce", "state__fresh", "state__recall", "state__remember", "state__slow", "state__whoami"]);
    assert_eq!(r["after"], after, "the list after the change is the server's new one: {r}");
    assert_eq!(r["freshCall"], json!("fresh"), "{r}");
    // Once per session: the announcing one and the other.
    assert_eq!(r["told"], json!({"a": 1, "b": 1}), "{r}");
    // The same server's prompts/list_changed is relayed the same way.
    assert_eq!(r["promptsCapability"], json!(true), "{r}");
    assert_eq!(r["promptsBefore"], json!(["state__greet"]), "{r}");
    assert_eq!(r["promptsAfter"], json!(["state__fresh", "state__greet"]), "{r}");
    assert_eq!(r["toldPrompts"], json!({"a": 1, "b": 1}), "{r}");
}

#[test]
fn a_servers_tool_list_change_reaches_every_stdio_session_and_the_new_list() {
    check_list_changed("stdio");
}

#[test]
fn a_servers_tool_list_change_reaches_every_http_session_and_the_new_list() {
    check_list_changed("http");
}

/// A session that disconnects with a call in flight has that call cancelled
/// upstream: the server itself counts the cancel, and it is the same
/// process (cancelled, not killed).
fn check_disconnect_cancels(transport: &str) {
    let world = World::new(&format!("gone-{transport}"), "");
    world.skep(&["up"]);
    let r = world.ts("disconnect", transport);
    assert_eq!(r["cancelled"], json!(1), "the server saw exactly one cancel: {r}");
    assert_eq!(r["samePid"], json!(true), "the server was cancelled, not replaced: {r}");
}

#[test]
fn a_stdio_session_that_disconnects_has_its_calls_cancelled() {
    check_disconnect_cancels("stdio");
}

#[test]
fn an_http_session_that_ends_has_its_calls_cancelled() {
    check_disconnect_cancels("http");
}

#[test]
fn a_reload_that_adds_a_role_tells_the_open_sessions() {
    let world = World::new("changed-reload", "");
    let r = world.ts("reload", "stdio");
    assert_eq!(r["before"], json!(false), "{r}");
    assert_eq!(r["after"], json!(true), "the new role's tool is listed after the reload: {r}");
    assert_eq!(r["told"], json!(1), "{r}");
}

/// Resources, resource templates and prompts, merged from the servers that
/// have them (state-server, and the memory server's knowledge graph), each
/// read or got from its own server, on `transport`.
fn check_resources(transport: &str) {
    let world = World::new(&format!("resources-{transport}"), "");
    world.skep(&["up"]);
    let r = world.ts("resources", transport);
    assert!(r["capabilities"]["resources"].is_object() && r["capabilities"]["prompts"].is_object(), "{r}");
    assert_eq!(r["resources"], json!(["skep://memory/memory://knowledge-graph", "skep://state/state://memory"]), "{r}");
    assert_eq!(r["templates"], json!(["skep://state/state://memory/{key}"]), "{r}");
    // Read from the server (its memory as a call left it), URIs offered back with the prefix.
    assert_eq!(r["whole"], json!({"uri": "skep://state/state://memory", "memory": {"k": "kept"}}), "{r}");
    assert_eq!(r["one"], json!({"uri": "skep://state/state://memory/k", "text": "kept"}), "{r}");
    assert_eq!(r["graph"], json!({"uri": "skep://memory/memory://knowledge-graph", "entities": []}), "{r}");
    assert_eq!(r["unknownRole"], json!(-32602), "{r}");
    assert_eq!(r["foreign"], json!(-32602), "{r}");
    // The server's own refusal, relayed (the SDK answers a thrown error with -32603).
    assert!(r["missing"].is_i64(), "{r}");
    assert_eq!(r["prompts"], json!(["state__greet"]), "{r}");
    assert_eq!(r["prompt"], json!(true), "the prompt comes from the server, with the arguments: {r}");
    assert_eq!(r["unknownPrompt"], json!(-32602), "{r}");
}

#[test]
fn resources_templates_and_prompts_are_merged_and_mapped_back_over_stdio() {
    check_resources("stdio");
}

#[test]
fn resources_templates_and_prompts_are_merged_and_mapped_back_over_http() {
    check_resources("http");
}

#[test]
fn print_config_gives_the_entries_for_both_transports() {
    let world = World::new("print-config", "");
    world.skep(&["up"]);
    let (url, token) = world.http();
    let printed = world.skep(&["mcp", "--print-config"]);
    let servers = &printed["mcpServers"];
    let config = world.config().display().to_string();
    assert_eq!(servers["skep"], json!({"command": SKEP, "args": ["mcp", "--config", config]}), "{printed}");
    let http = json!({"type": "http", "url": url, "headers": {"Authorization": format!("Bearer {token}")}});
    assert_eq!(servers["skep-http"], http, "{printed}");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(world.status()["daemon"]["mcp"]["token"].as_str().unwrap()).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600, "the token file is the user's alone");
}

#[test]
fn the_official_python_client_over_both_transports() {
    let world = World::new("py", "");
    for transport in ["stdio", "http"] {
        let r = world.py(transport);
        assert_eq!(r["server"], "skep", "{transport}: {r}");
        let tools = r["tools"].as_array().unwrap();
        assert!(tools.contains(&json!("state__whoami")) && tools.contains(&json!("memory__read_graph")), "{r}");
        assert!(r["who"]["pid"].as_u64().is_some_and(|p| !dead(p as u32)), "{transport}: {r}");
        assert!(r["fs"].as_str().unwrap().contains("files"), "{transport}: {r}");
    }
    poll("every relay to exit with its client", || relays(&world.config()).is_empty());
}

#[test]
fn ten_sessions_opened_and_closed_leave_the_pool_as_it_was_and_no_fd_behind() {
    let world = World::new("sessions", "");
    world.skep(&["up"]);
    let daemon = world.daemon_pid();
    // One session first, so that what a first session sets up once (the HTTP
    // listener's first connection, caches) is in the baseline.
    let warm = world.ts("sessions", "http");
    let pool = world.agent_pids("state");
    let fds = open_fds(daemon);
    for transport in ["stdio", "http"] {
        let r = world.ts("sessions", transport);
        let pids = r["pids"].as_array().unwrap();
        assert_eq!(pids.len(), 10);
        assert!(pids.iter().all(|p| *p == warm["pids"][0]), "{transport}: one warm server served them all: {r}");
    }
    assert_eq!(world.agent_pids("state"), pool, "the pool is as it was");
    poll("every relay to exit", || relays(&world.config()).is_empty());
    poll("the daemon's descriptors to come back", || open_fds(daemon) <= fds);
}

/// A child killed (and reaped) on drop, so a failed test leaves no process.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_stdio_relay_carries_progress_before_the_answer_under_the_clients_token() {
    use std::io::BufRead;
    let world = World::new("progress", "");
    let mut relay = Reaped(
        world
            .stripped(SKEP)
            .args(["mcp", "--config"])
            .arg(world.config())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut stdin = relay.0.stdin.take().unwrap();
    let stdout = std::io::BufReader::new(relay.0.stdout.take().unwrap());
    let lines = [
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}}),
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
            "name": "state__slow", "arguments": {"ms": 300, "steps": 3}, "_meta": {"progressToken": "mine"}}}),
    ];
    for line in lines {
        stdin.write_all(format!("{line}\n").as_bytes()).unwrap();
    }
    // The relay blocks on its daemon; a hang here is bounded by the reader thread and LIMIT.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stdout.lines() {
            let Ok(line) = line else { break };
            let message: Value = serde_json::from_str(&line).unwrap();
            let done = message["id"] == 2;
            let _ = tx.send(message);
            if done {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    loop {
        let message = rx.recv_timeout(LIMIT).expect("the relay answers within the limit");
        if message["id"] == 2 {
            assert!(message["result"]["structuredContent"]["slept"] == 300, "{message}");
            break;
        }
        if message["method"] == "notifications/progress" {
            assert_eq!(message["params"]["progressToken"], "mine", "{message}");
            seen.push(message["params"]["progress"].as_f64().unwrap());
        }
    }
    assert_eq!(seen, vec![1.0, 2.0, 3.0], "every progress notification, in order, before the answer");
    assert_eq!(world.status()["daemon"]["mcp"]["sessions"]["stdio"], 1, "`skep status` shows the open session");
    drop(stdin);
    poll("the relay to exit once its client closed stdin", || relay.0.try_wait().unwrap().is_some());
    poll("the ended session to leave `skep status`", || world.status()["daemon"]["mcp"]["sessions"]["stdio"] == 0);
}

/// Live processes whose command line has `arg`.
fn with_arg(arg: &str) -> Vec<u64> {
    let pids = std::fs::read_dir("/proc").unwrap().filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok());
    pids.filter(|&pid| {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        cmdline.split(|&b| b == 0).any(|a| a == arg.as_bytes()) && !dead(pid)
    })
    .map(u64::from)
    .collect()
}

/// Adds role `solo` (state-server.mjs, `share = "session"`, two spares) to
/// `world`'s config; its processes carry the returned marker argument.
fn add_solo_role(world: &World) -> String {
    let marker = format!("--solo-{}", world.root.file_name().unwrap().to_string_lossy());
    let script = clients_dir().join("state-server.mjs").display().to_string();
    let solo = format!(
        "\n[roles.solo]\ncommand = [\"node\", \"{script}\", \"{marker}\"]\nhandshake = \"mcp\"\nshare = \"session\"\nmin_warm = 2\nmax_agents = 4\n"
    );
    let config = std::fs::read_to_string(world.config()).unwrap() + &solo;
    std::fs::write(world.config(), config).unwrap();
    marker
}

#[test]
fn share_session_gives_each_session_its_own_warm_agent_and_stops_it_after() {
    let world = World::new("isolation", "");
    let marker = add_solo_role(&world);
    world.skep(&["up"]);
    let spares = with_arg(&marker);
    assert_eq!(spares.len(), 2, "min_warm spares are started with the daemon: {spares:?}");
    let shown = &world.status()["daemon"]["mcp"]["perSession"];
    assert_eq!(*shown, json!([{"role": "solo", "sessionAgents": 0, "spares": 2}]), "`skep status` shows them");
    for transport in ["stdio", "http"] {
        let r = world.ts("isolation", transport);
        let (a, b) = (r["pidA"].as_u64().unwrap(), r["pidB"].as_u64().unwrap());
        assert_ne!(a, b, "{transport}: two sessions, two agents: {r}");
        assert_eq!(r["recallA"], "only-a", "{transport}: {r}");
        assert_eq!(r["recallB"], Value::Null, "{transport}: state never leaks to another session: {r}");
        if transport == "stdio" {
            assert!(spares.contains(&a) && spares.contains(&b), "both came from the warm spares {spares:?}: {r}");
        }
        // Each session's agent is stopped with it, never handed to the next one.
        poll("the sessions' agents to stop", || dead(a as u32) && dead(b as u32));
        poll("the spares to be back", || with_arg(&marker).len() == 2);
    }
    // The shared pool never saw the per-session role.
    assert!(world.agent_pids("solo").is_empty());
}

/// One raw HTTP/1.1 request to the gateway; the status code and body.
/// What `skep stats` showed of two open sessions (a and b, each with its own
/// `solo` agent, a also calling the pooled `state`), on `transport`, and
/// that they are gone from it once ended.
fn check_sessions_in_stats(transport: &str) {
    let world = World::new("observed", "");
    add_solo_role(&world);
    world.skep(&["up"]);
    let (target, extra) = world.target(transport);
    let script = clients_dir().join("ts-client.mjs").display().to_string();
    let mut client = world.stripped("node");
    client
        .args([&script, "observed", transport, &target, &extra])
        .env("SKEP_BIN", SKEP)
        .env("SKEP_CONFIG", world.config());
    let r = report(&bounded(&mut client));
    let (solo_a, solo_b, state) = (r["soloA"].as_u64().unwrap(), r["soloB"].as_u64().unwrap(), &r["stateA"]);
    assert_ne!(solo_a, solo_b, "{r}");
    let open = r["open"]["open"].as_array().unwrap();
    assert_eq!(open.len(), 2, "two sessions open: {r}");
    for (session, (pid, calls)) in open.iter().zip([(solo_a, 2), (solo_b, 1)]) {
        assert_eq!(session["transport"], transport, "{session}");
        assert_eq!(session["calls"], calls, "{session}");
        assert_eq!(session["inFlight"], 0, "{session}");
        assert_eq!(session["agents"], json!([{"role": "solo", "pid": pid}]), "its own agent, the real server's pid");
    }
    if transport == "http" {
        let shown: Vec<String> =
            r["ids"].as_array().unwrap().iter().map(|id| id.as_str().unwrap()[..8].to_owned()).collect();
        assert_eq!(
            [&open[0]["id"], &open[1]["id"]],
            [&shown[0], &shown[1]],
            "the session ids the clients hold, shortened"
        );
    }
    let roles = &r["open"]["roles"];
    let role = |name: &str| roles.as_array().unwrap().iter().find(|x| x["role"] == name).unwrap().clone();
    assert_eq!(role("state"), json!({"role": "state", "share": "pool", "pids": [state]}), "{roles}");
    let mut solo: Vec<u64> = role("solo")["pids"].as_array().unwrap().iter().map(|p| p.as_u64().unwrap()).collect();
    solo.sort_unstable();
    assert_eq!(
        solo,
        {
            let mut both = vec![solo_a, solo_b];
            both.sort_unstable();
            both
        },
        "{roles}"
    );
    assert_eq!(role("solo")["share"], "session");
    let rendered = r["rendered"].as_str().unwrap();
    assert!(rendered.contains("MCP SESSION"), "{rendered}");
    let status = r["status"].as_str().unwrap();
    for pid in [solo_a, solo_b] {
        assert!(rendered.contains(&format!("solo pid {pid}")), "`skep stats` names pid {pid}: {rendered}");
        assert!(status.contains(&format!("solo pid {pid}")), "`skep status` lists the session: {status}");
    }
    assert_eq!(r["closed"]["open"], json!([]), "{r}");
    assert_eq!(role_pids(&r["closed"], "solo"), json!([]), "{r}");
    poll("the sessions' own agents to stop", || dead(solo_a as u32) && dead(solo_b as u32));
}

fn role_pids(mcp: &Value, name: &str) -> Value {
    mcp["roles"].as_array().unwrap().iter().find(|x| x["role"] == name).unwrap()["pids"].clone()
}

#[test]
fn stats_show_the_stdio_sessions_and_the_agents_serving_them() {
    check_sessions_in_stats("stdio");
}

#[test]
fn stats_show_the_http_sessions_and_the_agents_serving_them() {
    check_sessions_in_stats("http");
}

fn http(url: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, String) {
    let authority = url.strip_prefix("http://").and_then(|u| u.strip_suffix("/mcp")).expect("http://HOST:PORT/mcp");
    let mut stream = TcpStream::connect(authority).unwrap();
    stream.set_read_timeout(Some(LIMIT)).unwrap();
    let mut request = format!("POST /mcp HTTP/1.1\r\nContent-Length: {}\r\nConnection: close\r\n", body.len());
    if !headers.iter().any(|(name, _)| *name == "Host") {
        request.push_str(&format!("Host: {authority}\r\n"));
    }
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    // A server may answer before reading a body it refuses.
    let _ = stream.write_all(body);
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("no status: {text:?}"));
    (status, text)
}

#[test]
fn bad_http_input_gets_its_documented_status_and_the_gateway_lives_on() {
    let world = World::new("bad-http", "");
    world.skep(&["up"]);
    let (url, token) = world.http();
    let bearer = format!("Bearer {token}");
    let json_headers = |extra: &[(&'static str, &'static str)]| {
        let mut h = vec![("Content-Type", "application/json"), ("Accept", "application/json, text/event-stream")];
        h.extend_from_slice(extra);
        h
    };
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}})
    .to_string();
    let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}).to_string();
    let with_token = |extra: &[(&'static str, &'static str)]| {
        let mut h = json_headers(extra);
        h.push(("Authorization", bearer.as_str()));
        h
    };
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, Vec<u8>, u16);
    let cases: Vec<Case> = vec![
        ("no token", json_headers(&[]), init.clone().into_bytes(), 401),
        ("a wrong token", json_headers(&[("Authorization", "Bearer 0123")]), init.clone().into_bytes(), 401),
        ("a foreign Origin", with_token(&[("Origin", "http://evil.example")]), init.clone().into_bytes(), 403),
        ("malformed JSON", with_token(&[]), b"{\"jsonrpc\": \"2.0\", \"id\": 1, \"method\"".to_vec(), 400),
        ("a DNS-rebinding Host", with_token(&[("Host", "evil.example")]), init.clone().into_bytes(), 403),
        ("no session id after initialize", with_token(&[]), list.clone().into_bytes(), 400),
        ("an unknown session id", with_token(&[("Mcp-Session-Id", "no-such-session")]), list.clone().into_bytes(), 404),
        ("a body over max_body", with_token(&[]), vec![b' '; 65 * 1024], 413),
    ];
    for (what, headers, body, expected) in &cases {
        let (status, text) = http(&url, headers, body);
        assert_eq!(status, *expected, "{what}: {text}");
    }
    // After all that, a well-formed session starts and lists tools.
    let (status, text) = http(&url, &with_token(&[]), init.as_bytes());
    assert_eq!(status, 200, "{text}");
    let session = text
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("mcp-session-id: ").map(|_| l[16..].trim().to_owned()))
        .expect("a session id");
    let mut headers = with_token(&[]);
    headers.push(("Mcp-Session-Id", session.as_str()));
    let (status, text) = http(&url, &headers, list.as_bytes());
    // The session is not initialized (no notifications/initialized): still an answer, not a crash.
    assert!(status < 500, "{text}");
    let r = world.ts("sessions", "http");
    assert_eq!(r["pids"].as_array().unwrap().len(), 10, "the gateway serves on: {r}");
}

/// The headers and body of a raw HTTP answer.
fn split_answer(text: &str) -> (String, String) {
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((text, ""));
    (head.to_ascii_lowercase(), body.to_owned())
}

#[test]
fn a_single_http_answer_is_plain_json_and_progress_keeps_the_event_stream() {
    let world = World::new("json-http", "");
    world.skep(&["up"]);
    let (url, token) = world.http();
    let bearer = format!("Bearer {token}");
    let mut headers = vec![
        ("Content-Type", "application/json"),
        ("Accept", "application/json, text/event-stream"),
        ("Authorization", bearer.as_str()),
    ];
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}});
    let (status, text) = http(&url, &headers, init.to_string().as_bytes());
    let (head, body) = split_answer(&text);
    assert_eq!(status, 200, "{text}");
    assert!(head.contains("content-type: application/json"), "initialize answered as JSON: {text}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["result"]["serverInfo"]["name"], "skep", "{text}");
    let session = (head.lines())
        .find_map(|l| l.strip_prefix("mcp-session-id: ").map(str::trim))
        .map(|s| text[text.to_ascii_lowercase().find(s).unwrap()..][..s.len()].to_owned())
        .expect("a session id");
    headers.push(("Mcp-Session-Id", session.as_str()));
    headers.push(("MCP-Protocol-Version", "2025-06-18"));
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    assert_eq!(http(&url, &headers, initialized.to_string().as_bytes()).0, 202);

    let call = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": {"name": "state__whoami", "arguments": {}}});
    let (status, text) = http(&url, &headers, call.to_string().as_bytes());
    let (head, body) = split_answer(&text);
    assert_eq!(status, 200, "{text}");
    assert!(head.contains("content-type: application/json"), "a plain call answered as JSON: {text}");
    let answer: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert_eq!(answer["id"], 2, "{text}");
    assert!(answer["result"]["structuredContent"]["pid"].is_u64(), "{text}");

    // Progress comes before the answer: the stream stays, every message in order.
    let slow = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
        "params": {"name": "state__slow", "arguments": {"ms": 200, "steps": 2}, "_meta": {"progressToken": "p"}}});
    let (status, text) = http(&url, &headers, slow.to_string().as_bytes());
    let (head, body) = split_answer(&text);
    assert_eq!(status, 200, "{text}");
    assert!(head.contains("content-type: text/event-stream"), "{text}");
    let messages: Vec<Value> = (body.lines())
        .filter_map(|l| l.strip_prefix("data:").map(str::trim))
        .filter(|d| !d.is_empty())
        .filter_map(|d| serde_json::from_str(d).ok())
        .collect();
    // Progress as its number (the SDK sends 1.0), the answer as its id.
    let shape: Vec<Value> = messages
        .iter()
        .map(|m| m["params"]["progress"].as_f64().map_or(m["id"].clone(), |p| json!(p as u64)))
        .collect();
    assert_eq!(shape, vec![json!(1), json!(2), json!(3)], "progress 1, 2, then the answer (id 3): {text}");
}

/// Opens an HTTP session by hand (initialize, initialized) and returns its id.
fn open_http_session(url: &str, headers: &[(&str, &str)]) -> String {
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}});
    let (status, text) = http(url, headers, init.to_string().as_bytes());
    assert_eq!(status, 200, "{text}");
    let (head, _) = split_answer(&text);
    let session = (head.lines())
        .find_map(|l| l.strip_prefix("mcp-session-id: ").map(str::trim))
        .map(|s| text[text.to_ascii_lowercase().find(s).unwrap()..][..s.len()].to_owned())
        .expect("a session id");
    let mut with_session = headers.to_vec();
    with_session.extend([("Mcp-Session-Id", session.as_str()), ("MCP-Protocol-Version", "2025-06-18")]);
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    assert_eq!(http(url, &with_session, initialized.to_string().as_bytes()).0, 202);
    session
}

/// A `tools/call` of `solo__whoami`.
fn solo_whoami() -> Value {
    json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "solo__whoami", "arguments": {}}})
}

/// An HTTP session opened by hand on `world`'s gateway, whose `solo__whoami`
/// answered: its id, the pid of its own `solo` agent, and a way to post more
/// messages in it.
fn solo_session(world: &World) -> (String, u64, impl Fn(&Value) -> (u16, String)) {
    let (url, token) = world.http();
    let bearer = format!("Bearer {token}");
    let headers = move |session: Option<&str>| {
        let mut all = vec![
            ("Content-Type", "application/json".to_owned()),
            ("Accept", "application/json, text/event-stream".to_owned()),
            ("Authorization", bearer.clone()),
        ];
        if let Some(id) = session {
            all.extend([("Mcp-Session-Id", id.to_owned()), ("MCP-Protocol-Version", "2025-06-18".to_owned())]);
        }
        all
    };
    let opening = headers(None);
    let session = open_http_session(&url, &opening.iter().map(|(k, v)| (*k, v.as_str())).collect::<Vec<_>>());
    let id = session.clone();
    let post = move |message: &Value| {
        let all = headers(Some(&id));
        let all: Vec<(&str, &str)> = all.iter().map(|(k, v)| (*k, v.as_str())).collect();
        http(&url, &all, message.to_string().as_bytes())
    };
    let (status, text) = post(&solo_whoami());
    assert_eq!(status, 200, "{text}");
    let (_, body) = split_answer(&text);
    let pid = serde_json::from_str::<Value>(&body).unwrap()["result"]["structuredContent"]["pid"].as_u64().unwrap();
    (session, pid, post)
}

#[test]
fn an_http_session_never_deleted_ends_after_session_idle_and_its_own_agent_stops() {
    let world = World::new("idle", "");
    add_solo_role(&world);
    let config = std::fs::read_to_string(world.config()).unwrap();
    std::fs::write(
        world.config(),
        config.replace("max_body = \"64KiB\"\n", "max_body = \"64KiB\"\nsession_idle = \"1s\"\n"),
    )
    .unwrap();
    world.skep(&["up"]);
    let (session, pid, post) = solo_session(&world);
    assert!(!dead(pid as u32), "the session's own agent runs while the session is open");
    // No DELETE, no further message: the idle timeout ends the session.
    poll("the idle session's own agent to stop", || dead(pid as u32));
    let mcp = &world.status()["daemon"]["mcp"];
    assert_eq!(mcp["sessions"]["http"], 0, "{mcp}");
    assert_eq!(mcp["open"], json!([]), "{mcp}");
    let (status, text) = post(&solo_whoami());
    assert_eq!(status, 404, "the ended session {session} is unknown: {text}");
}

#[test]
fn a_servers_paginated_lists_are_followed_to_their_last_page() {
    let script = clients_dir().join("state-server.mjs").display().to_string();
    let paged =
        format!("\n[roles.paged]\ncommand = [\"node\", \"{script}\", \"--page-size\", \"1\"]\nhandshake = \"mcp\"\n");
    let world = World::new("paged", &paged);
    world.skep(&["up"]);
    let r = world.ts("paged", "stdio");
    let tools = ["paged__announce", "paged__recall", "paged__remember", "paged__slow", "paged__whoami"];
    assert_eq!(r["tools"], json!(tools), "every page of the server's tools, one tool a page: {r}");
    assert_eq!(r["toolsCursor"], Value::Null, "the gateway's own list is one page: {r}");
    assert_eq!(r["resources"], json!(["skep://paged/state://memory", "skep://paged/state://pid"]), "{r}");
    // After the announce the server has two prompts, on two pages, and the list is fresh (list_changed cleared it).
    assert_eq!(r["prompts"], json!(["paged__fresh", "paged__greet"]), "{r}");
    assert_eq!(r["call"], "fresh", "{r}");
}

#[test]
fn the_grid_status_window_shows_an_open_session_and_its_own_agent() {
    let world = World::new("grid", "");
    add_solo_role(&world);
    world.skep(&["up"]);
    let (session, pid, _post) = solo_session(&world);

    let config = world.config().display().to_string();
    let printed = bounded(world.stripped(SKEP).args(["grid", "--config", &config, "--detach"]));
    let words: Vec<&str> = printed.split_whitespace().collect();
    assert!(matches!(words.as_slice(), ["tmux", "-S", _, "attach", "-t", _]), "{printed}");
    let (tmux_socket, tmux_session) = (words[2].to_owned(), words[5].to_owned());
    let socket = world.status()["daemon"]["socket"].as_str().unwrap().to_owned();
    // Ends the grid even when an assertion fails first (the grid also ends with its daemon).
    struct StopGrid(Command);
    impl Drop for StopGrid {
        fn drop(&mut self) {
            let _ = self.0.output();
        }
    }
    let mut stop = world.stripped(SKEP);
    stop.args(["grid", "--stop", "--attach", &socket]);
    let stop = StopGrid(stop);
    let capture = || {
        let out = Command::new("tmux")
            .args(["-S", &tmux_socket, "capture-pane", "-p", "-t", &format!("{tmux_session}:grid.0")])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let shown = format!("solo pid {pid}");
    let short = &session[..8];
    poll("the grid's status window to show the session", || {
        let screen = capture();
        screen.contains("MCP SESSION") && screen.lines().any(|l| l.starts_with(short) && l.contains(&shown))
    });
    drop(stop);
    let alive = Command::new("tmux").args(["-S", &tmux_socket, "list-sessions"]).output().unwrap().status.success();
    assert!(!alive, "the grid is gone");
}
