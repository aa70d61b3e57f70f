//! The observe socket through the real binary: `skep serve --observe`,
//! `skep ls` (and its cleaning of stale sockets), `skep stats --json`, and
//! the refusal of a directory others may enter.

mod support;

use std::os::unix::fs::PermissionsExt;

use serde_json::{Value, json};
use support::{Guard, Scratch, Sidecar, agent_pids, dead, exists, poll};

fn ls(scratch: &Scratch) -> Vec<Value> {
    serde_json::from_str::<Value>(&scratch.ok(&["ls", "--json"])).expect("JSON").as_array().expect("array").clone()
}

#[test]
fn ls_finds_a_sidecar_in_the_private_dir_and_cleans_stale_sockets() {
    let scratch = Scratch::new("ls");
    let mut sidecar = Sidecar::start(&scratch, &[]);
    poll("skep ls lists the sidecar", || ls(&scratch).len() == 1);
    let dir = scratch.observe_dir();
    assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
    let found = &ls(&scratch)[0];
    let socket = dir.join(format!("{}.sock", sidecar.child.id()));
    assert_eq!(found["socket"], json!(socket));
    assert_eq!(std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(found["info"]["pid"], sidecar.child.id());
    assert_eq!(found["info"]["config"], json!(scratch.config));
    assert_eq!(found["info"]["roles"], 2);
    assert_eq!(found["info"]["agents"]["idle"], 6);

    // A socket whose orchestrator died without removing it: nobody listens.
    let stale = dir.join("4242.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).expect("bind"));
    assert!(exists(&stale));
    assert_eq!(ls(&scratch).len(), 1);
    assert!(!exists(&stale), "skep ls should remove the stale socket");

    let table = scratch.ok(&["ls"]);
    assert!(table.contains(&sidecar.child.id().to_string()) && table.contains("skep.toml"), "{table}");
    sidecar.finish();
    assert!(!exists(&socket), "the sidecar removes its socket when it stops");
    assert!(ls(&scratch).is_empty());
}

#[test]
fn stats_json_and_table_show_roles_agents_and_calls() {
    let scratch = Scratch::new("stats");
    let socket = scratch.observe_dir().join("app.sock");
    let mut sidecar = Sidecar::start(&scratch, &[socket.to_str().unwrap()]);
    poll("the socket is served", || exists(&socket));
    let id = sidecar.send("swarm/call", json!({"role": "beta", "method": "echo", "params": {"x": 1}}));
    assert_eq!(sidecar.answer()["id"], id);
    let stats: Value =
        serde_json::from_str(&scratch.ok(&["stats", "--json", "--attach", socket.to_str().unwrap()])).expect("JSON");
    let roles: Vec<(&str, u64)> = stats["stats"]["roles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["role"].as_str().unwrap(), r["calls"].as_u64().unwrap()))
        .collect();
    assert_eq!(roles, [("alpha", 0), ("beta", 1)]);
    let pids = agent_pids(&stats);
    assert_eq!(pids.len(), 6);
    // Without --attach: the only running orchestrator.
    let table = scratch.ok(&["stats"]);
    let beta = table.lines().find(|l| l.starts_with("beta")).expect("a beta row");
    assert_eq!(beta.split_whitespace().take(4).collect::<Vec<_>>(), ["beta", "3", "up", "1"], "{table}");
    sidecar.finish();
    assert!(pids.iter().all(|&p| dead(p)));
    let out = scratch.run(&["stats"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no running orchestrator"));
}

#[test]
fn serve_refuses_an_observe_dir_others_can_enter() {
    let scratch = Scratch::new("wide");
    let wide = scratch.root.join("wide");
    std::fs::create_dir(&wide).unwrap();
    std::fs::set_permissions(&wide, std::fs::Permissions::from_mode(0o755)).unwrap();
    let socket = wide.join("x.sock");
    let config = scratch.config.to_str().unwrap();
    let out = scratch.run(&["serve", "--config", config, "--observe", socket.to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("mode 755") && stderr.contains("chmod 700"), "{stderr}");
    assert!(!exists(&socket));
}

#[test]
fn a_second_orchestrator_cannot_take_a_live_socket() {
    let scratch = Scratch::new("inuse");
    let socket = scratch.observe_dir().join("one.sock");
    let mut first = Sidecar::start(&scratch, &[socket.to_str().unwrap()]);
    poll("the socket is served", || exists(&socket));
    let config = scratch.config.to_str().unwrap();
    let out = scratch.run(&["serve", "--config", config, "--observe", socket.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("in use by a running orchestrator"));
    assert_eq!(ls(&scratch).len(), 1, "the first orchestrator still serves");
    first.finish();
}

#[test]
fn stats_watch_redraws_until_the_orchestrator_ends() {
    use std::io::Read;
    let scratch = Scratch::new("watch");
    let mut sidecar = Sidecar::start(&scratch, &[]);
    poll("skep ls lists the sidecar", || ls(&scratch).len() == 1);
    let mut watch = Guard(
        scratch
            .skep(&["stats", "--watch"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("skep stats --watch starts"),
    );
    let mut stdout = watch.0.stdout.take().unwrap();
    let mut seen = String::new();
    let mut buf = [0u8; 4096];
    // Two frames, each starting by clearing the screen: it refreshes in place.
    while seen.matches("\x1b[H\x1b[2J").count() < 2 {
        let n = stdout.read(&mut buf).expect("readable");
        assert!(n > 0, "stats --watch ended early: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(seen.contains("ROLE/AGENT") && seen.contains("alpha/1"), "{seen}");
    sidecar.finish();
    stdout.read_to_string(&mut seen).expect("readable to the end");
    poll("stats --watch exits", || watch.0.try_wait().unwrap().is_some());
    assert!(watch.0.wait().unwrap().success());
    assert!(seen.ends_with("\n") && seen.contains("orchestrator ended"), "{seen}");
}
