//! `skep serve` under the two orchestrator-level scenarios of
//! docs/reliability.md: killed with SIGKILL (12), and its caller closing
//! stdin with 1,000 calls in flight (14).

use std::collections::HashMap;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::time::{Instant, timeout};

const SKEP: &str = env!("CARGO_BIN_EXE_skep");
const STEP: Duration = Duration::from_secs(30);

fn serve() -> (Child, ChildStdin, tokio::io::Lines<BufReader<ChildStdout>>) {
    serve_with(&[])
}

fn serve_with(args: &[&str]) -> (Child, ChildStdin, tokio::io::Lines<BufReader<ChildStdout>>) {
    let mut child = Command::new(SKEP)
        .env("SKEP_NO_DAEMON", "1")
        .arg("serve")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("skep serve starts");
    let stdin = child.stdin.take().expect("piped");
    let lines = BufReader::new(child.stdout.take().expect("piped")).lines();
    (child, stdin, lines)
}

async fn request(
    stdin: &mut ChildStdin,
    lines: &mut tokio::io::Lines<BufReader<ChildStdout>>,
    id: u64,
    method: &str,
) -> Value {
    let line = json!({"jsonrpc": "2.0", "id": id, "method": method}).to_string() + "\n";
    stdin.write_all(line.as_bytes()).await.expect("serve reads");
    let reply = timeout(STEP, lines.next_line()).await.expect("in time").expect("readable").expect("a reply");
    serde_json::from_str(&reply).expect("JSON")
}

/// Dead: gone, or a zombie waiting for init to reap it (it no longer runs).
fn dead(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

fn agent_pids(agents: &Value) -> Vec<u32> {
    agents["result"].as_array().expect("agents").iter().map(|a| a["pid"].as_u64().expect("pid") as u32).collect()
}

/// reliability 12: a killed orchestrator takes its agents with it
/// (parent-death signal), without any chance to stop them itself.
#[tokio::test]
async fn agents_die_with_a_killed_orchestrator() {
    let (mut child, mut stdin, mut lines) = serve();
    let pids = agent_pids(&request(&mut stdin, &mut lines, 1, "swarm/agents").await);
    assert!(!pids.is_empty() && pids.iter().all(|p| !dead(*p)), "{pids:?}");
    child.start_kill().expect("SIGKILL");
    child.wait().await.expect("reaped");
    let deadline = Instant::now() + STEP;
    while !pids.iter().all(|p| dead(*p)) {
        assert!(Instant::now() < deadline, "agents outlived their orchestrator: {pids:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// reliability 14: stdin closes with 1,000 calls in flight. Every call is
/// answered exactly once, with its result or -32005; then a clean exit and
/// no agent left.
#[tokio::test]
async fn closing_stdin_with_1000_calls_in_flight_answers_every_call() {
    let (mut child, mut stdin, mut lines) = serve();
    let pids = agent_pids(&request(&mut stdin, &mut lines, 0, "swarm/agents").await);
    let reader = tokio::spawn(async move {
        let mut answers: HashMap<u64, Value> = HashMap::new();
        while let Some(line) = timeout(STEP, lines.next_line()).await.expect("in time").expect("readable") {
            let reply: Value = serde_json::from_str(&line).expect("JSON");
            let id = reply["id"].as_u64().expect("an id");
            assert!(answers.insert(id, reply).is_none(), "id {id} answered twice");
        }
        answers
    });
    let mut batch = String::new();
    for id in 1..=1000u64 {
        // Three calls outlast the 5 s grace period; the rest finish inside it.
        let ms = if id % 400 == 0 { 60_000 } else { 5 };
        let params = json!({"role": "demo", "method": "sleep", "params": {"ms": ms}});
        batch += &(json!({"jsonrpc": "2.0", "id": id, "method": "swarm/call", "params": params}).to_string() + "\n");
    }
    stdin.write_all(batch.as_bytes()).await.expect("serve reads");
    drop(stdin);
    let answers = timeout(STEP, reader).await.expect("output ends").expect("no panic");
    assert_eq!(answers.len(), 1000);
    for (id, reply) in &answers {
        if id % 400 == 0 {
            assert_eq!(reply["error"]["code"], -32005, "{reply}");
        } else {
            assert_eq!(reply["result"]["slept"], 5, "{reply}");
        }
    }
    let status = timeout(STEP, child.wait()).await.expect("exits").expect("wait");
    assert!(status.success(), "{status}");
    assert!(pids.iter().all(|p| dead(*p)), "agents left behind: {pids:?}");
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("a live process");
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS");
    line.split_whitespace().nth(1).and_then(|n| n.parse().ok()).expect("a number")
}

/// reliability 13, the largest case: a 100 MiB line is answered with -32600
/// and skipped without being held; the connection lives on.
#[tokio::test]
async fn a_100_mib_line_is_refused_without_being_buffered() {
    let (mut child, mut stdin, mut lines) = serve();
    let pid = child.id().expect("running");
    request(&mut stdin, &mut lines, 1, "initialize").await;
    let chunk = vec![b'x'; 1 << 20];
    let writer = tokio::spawn(async move {
        stdin.write_all(b"{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"ping\",\"params\":[\"").await.expect("write");
        for _ in 0..100 {
            stdin.write_all(&chunk).await.expect("serve keeps reading");
        }
        stdin.write_all(b"\"]}\n").await.expect("write");
        stdin
    });
    let refused = timeout(STEP, lines.next_line()).await.expect("in time").expect("readable").expect("a reply");
    let refused: Value = serde_json::from_str(&refused).expect("JSON");
    assert_eq!((refused["id"].clone(), refused["error"]["code"].clone()), (Value::Null, json!(-32600)), "{refused}");
    let mut stdin = timeout(STEP, writer).await.expect("written").expect("no panic");
    assert!(rss_kib(pid) < 64 * 1024, "skep serve holds {} KiB after a 100 MiB line", rss_kib(pid));
    let alive = request(&mut stdin, &mut lines, 3, "swarm/roles").await;
    assert_eq!(alive["result"][0]["name"], "demo");
    drop(stdin);
    assert!(timeout(STEP, child.wait()).await.expect("exits").expect("wait").success());
}

/// reliability 16, end to end: 10,000 calls in flight through `skep serve`
/// to the demo agents, each answered exactly once.
#[tokio::test]
async fn ten_thousand_concurrent_calls_through_the_sidecar_are_each_answered_once() {
    const CALLS: u64 = 10_000;
    // Debug builds answer far slower than release: give the queue room.
    let config = tempfile::Builder::new().prefix("skep-10k-").suffix(".toml").tempfile().expect("a temp config");
    let role = format!(
        "[roles.demo]\ncommand = [{SKEP:?}, \"agent\", \"demo\"]\nmin_warm = 8\nmax_agents = 8\nqueue_timeout = \"10m\"\n"
    );
    std::fs::write(config.path(), role).expect("a temp config");
    let (mut child, stdin, mut lines) = serve_with(&["--config", config.path().to_str().expect("UTF-8 path")]);
    let writer = tokio::spawn(async move {
        let mut stdin = stdin;
        let mut batch = String::new();
        for id in 1..=CALLS {
            let params = json!({"role": "demo", "method": "echo", "params": {"n": id}});
            batch +=
                &(json!({"jsonrpc": "2.0", "id": id, "method": "swarm/call", "params": params}).to_string() + "\n");
        }
        stdin.write_all(batch.as_bytes()).await.expect("serve reads");
        stdin
    });
    let mut seen = vec![false; CALLS as usize + 1];
    for _ in 0..CALLS {
        let line = timeout(STEP, lines.next_line()).await.expect("in time").expect("readable").expect("a reply");
        let reply: Value = serde_json::from_str(&line).expect("JSON");
        let id = reply["id"].as_u64().expect("an id");
        assert_eq!(reply["result"], json!({"n": id}), "{reply}");
        assert!(!std::mem::replace(&mut seen[id as usize], true), "id {id} answered twice");
    }
    drop(timeout(STEP, writer).await.expect("written").expect("no panic"));
    let status = timeout(STEP, child.wait()).await.expect("exits").expect("wait");
    assert!(status.success(), "{status}");
    assert!(timeout(STEP, lines.next_line()).await.expect("ended").expect("readable").is_none(), "an extra reply");
}
