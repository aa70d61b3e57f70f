//! Agents that live for days, against real processes: recycling past
//! `max_rss` and `max_lifetime` with the replacement warm first, kernel
//! limits set before exec, and each agent's RSS and CPU as /proc sees them.
//! Every test is bounded, polls instead of sleeping, and checks after
//! shutdown that no agent process it saw is left.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};
use skep_swarm::{AgentInfo, Event, Handshake, RecycleCause, Rlimits, Swarm};
use skep_testkit::{STEP, agent_role, call, gone, start};
use tokio::sync::broadcast;
use tokio::time::{Instant, timeout};

const MIB: u64 = 1 << 20;

/// Log lines written by the tracing subscriber of a test.
#[derive(Clone, Default)]
struct Log(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl Log {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("log lock")).into_owned()
    }
}

impl std::io::Write for Log {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log lock").extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Log {
    type Writer = Log;
    fn make_writer(&'a self) -> Log {
        self.clone()
    }
}

/// Shuts down and checks that none of `pids` is left.
async fn finish(swarm: Swarm, pids: &BTreeSet<u32>) {
    timeout(STEP, swarm.shutdown()).await.expect("shut down in time");
    for pid in pids {
        assert!(gone(*pid), "agent {pid} survived the shutdown");
    }
    assert!(swarm.agents().await.is_empty());
}

/// Every event so far, without waiting.
fn drain(events: &mut broadcast::Receiver<Event>, into: &mut Vec<Event>) {
    while let Ok(event) = events.try_recv() {
        into.push(event);
    }
}

/// Polls the swarm's agents until `check` picks something, failing at [`STEP`].
async fn until<T>(swarm: &Swarm, what: &str, check: impl Fn(&[AgentInfo]) -> Option<T>) -> T {
    let deadline = Instant::now() + STEP;
    loop {
        let agents = swarm.agents().await;
        if let Some(found) = check(&agents) {
            return found;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}; agents: {agents:#?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls the event stream until `pick` matches one, failing at [`STEP`].
async fn until_event<T>(
    events: &mut broadcast::Receiver<Event>,
    seen: &mut Vec<Event>,
    what: &str,
    pick: impl Fn(&Event) -> Option<T>,
) -> T {
    let deadline = Instant::now() + STEP;
    loop {
        drain(events, seen);
        if let Some(found) = seen.iter().find_map(&pick) {
            return found;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}; events: {seen:#?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The position of the first event matching `pick`.
fn position(seen: &[Event], what: &str, pick: impl Fn(&Event) -> bool) -> usize {
    seen.iter().position(pick).unwrap_or_else(|| panic!("no {what} in {seen:#?}"))
}

/// Checks the event order of a recycle: the replacement was ready before
/// the recycled agent exited, and it exited as asked.
fn assert_replaced_warm_first(seen: &[Event], old: &str, old_pid: u32) {
    let recycled = position(seen, "recycle", |e| matches!(e, Event::AgentRecycled { agent, .. } if agent == old));
    let exited =
        position(seen, "exit of the old agent", |e| matches!(e, Event::AgentExited { pid, .. } if *pid == old_pid));
    let ready_between =
        seen[recycled..exited].iter().any(|e| matches!(e, Event::AgentReady { agent, .. } if agent != old));
    assert!(ready_between, "no replacement was ready before {old} left: {seen:#?}");
    assert!(
        matches!(&seen[exited], Event::AgentExited { expected: true, .. }),
        "the recycled agent was not stopped as asked: {:?}",
        seen[exited]
    );
}

#[tokio::test]
async fn an_agent_past_max_rss_is_recycled_after_its_third_or_fourth_call_with_its_replacement_warm_first() {
    // A replacement takes a while to be ready, so an agent that left without
    // waiting for it would be seen leaving first.
    let mut role = agent_role("leaky", &["--grow-mb", "50", "--startup-delay-ms", "300"]);
    role.handshake = Handshake::Initialize;
    role.max_agents = 2;
    role.max_rss = Some(150 * MIB);
    // The supervisor logs from this thread (a current-thread runtime): catch what it says.
    let log = Log::default();
    let subscriber = tracing_subscriber::fmt().with_writer(log.clone()).with_ansi(false).finish();
    let _logging = tracing::subscriber::set_default(subscriber);
    let swarm = start(vec![role]).await;
    let mut events = swarm.subscribe();
    let mut seen = Vec::new();
    let mut pids = Vec::new();
    // Every call is answered, whichever agent serves it.
    for i in 0..8 {
        let pid = call(&swarm, "leaky", "pid", json!([])).await.unwrap_or_else(|e| panic!("call {i}: {e}"));
        pids.push(pid.as_u64().expect("a pid") as u32);
        // What the views show is a whole group's sample or nothing, also right
        // after a call: never a half-known one (the leader's RSS, no members, no CPU).
        for agent in swarm.agents().await {
            if agent.rss_bytes.is_some() {
                assert!(agent.processes >= Some(1) && agent.cpu_ms.is_some(), "after call {i}: {agent:?}");
            }
        }
    }
    let first = pids[0];
    let served_by_first = pids.iter().take_while(|p| **p == first).count();
    assert!((3..=4).contains(&served_by_first), "the first agent served {served_by_first} calls: {pids:?}");
    assert!(pids[served_by_first..].iter().all(|p| *p != first), "the recycled agent took calls again: {pids:?}");

    let (agent, reason) = until_event(&mut events, &mut seen, "the memory recycle", |e| match e {
        Event::AgentRecycled { agent, pid, cause: RecycleCause::Memory, reason, .. } if *pid == first => {
            Some((agent.clone(), reason.clone()))
        }
        _ => None,
    })
    .await;
    assert!(reason.starts_with("RSS ") && reason.ends_with(" over max_rss 150.0 MiB"), "{reason}");
    let logged = log.text();
    let line = logged.lines().find(|l| l.contains("recycled: RSS")).unwrap_or_else(|| panic!("not logged: {logged}"));
    assert!(line.contains(" WARN ") && line.contains(&format!("recycled: {reason}")), "{line}");
    until_event(&mut events, &mut seen, "the old agent's exit", |e| {
        matches!(e, Event::AgentExited { pid, .. } if *pid == first).then_some(())
    })
    .await;
    assert_replaced_warm_first(&seen, &agent, first);
    assert!(gone(first), "the recycled agent {first} is still running");

    let stats = swarm.stats().await;
    let recycled = stats.roles[0].recycled;
    assert!(recycled.memory >= 1, "{recycled:?}");
    assert_eq!((recycled.calls, recycled.lifetime, recycled.crash, recycled.noise), (0, 0, 0, 0), "{recycled:?}");
    finish(swarm, &pids.into_iter().collect()).await;
}

#[tokio::test]
async fn agents_past_their_lifetime_are_recycled_idle_or_busy_and_calls_keep_being_answered() {
    let mut role = agent_role("aging", &["--startup-delay-ms", "300"]);
    role.handshake = Handshake::Initialize;
    role.max_agents = 2;
    role.max_lifetime = Some(Duration::from_secs(1));
    role.recycle_jitter = 0.0;
    let swarm = start(vec![role]).await;
    let mut events = swarm.subscribe();
    let mut seen = Vec::new();
    let agents = swarm.agents().await;
    let (old, old_pid) = (agents[0].id.clone(), agents[0].pid);
    let mut pids = BTreeSet::from([old_pid]);
    // An idle agent ages out too: nothing but the clock recycles it.
    skep_testkit::eventually("the idle agent past its lifetime to leave", STEP, || gone(old_pid)).await;
    let reason = until_event(&mut events, &mut seen, "the lifetime recycle", |e| match e {
        Event::AgentRecycled { agent, cause: RecycleCause::Lifetime, reason, .. } if *agent == old => {
            Some(reason.clone())
        }
        _ => None,
    })
    .await;
    assert!(reason.contains("reached its max_lifetime (role max_lifetime 1s)"), "{reason}");
    until_event(&mut events, &mut seen, "the old agent's exit", |e| {
        matches!(e, Event::AgentExited { pid, .. } if *pid == old_pid).then_some(())
    })
    .await;
    assert_replaced_warm_first(&seen, &old, old_pid);

    // Its replacement ages out under a stream of calls, each of them answered.
    let next =
        until(&swarm, "the replacement", |a| a.iter().find(|a| a.state != "stopping" && a.pid != 0).cloned()).await;
    let deadline = Instant::now() + STEP;
    while !gone(next.pid) {
        let pid = call(&swarm, "aging", "pid", json!([])).await.expect("answered while recycling");
        pids.insert(pid.as_u64().expect("a pid") as u32);
        assert!(Instant::now() < deadline, "the busy agent past its lifetime was never replaced");
    }
    until_event(&mut events, &mut seen, "the second lifetime recycle", |e| {
        matches!(e, Event::AgentRecycled { agent, cause: RecycleCause::Lifetime, .. } if *agent == next.id)
            .then_some(())
    })
    .await;
    assert_replaced_warm_first(&seen, &next.id, next.pid);
    assert!(swarm.stats().await.roles[0].recycled.lifetime >= 2);
    pids.extend(swarm.agents().await.iter().map(|a| a.pid).filter(|p| *p != 0));
    finish(swarm, &pids).await;
}

/// One line of /proc/PID/limits: (soft, hard) as written there.
fn proc_limit(pid: u32, name: &str) -> (String, String) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("the agent's limits");
    let line = text.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("no {name:?} in {text}"));
    let mut values = line[name.len()..].split_whitespace();
    let (soft, hard) = (values.next().expect("soft"), values.next().expect("hard"));
    (soft.to_owned(), hard.to_owned())
}

#[tokio::test]
async fn rlimits_bind_the_agent_before_exec_and_leave_the_orchestrator_alone() {
    let before = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    let mut limited = agent_role("limited", &[]);
    limited.rlimits =
        Rlimits { nofile: Some(32), data: Some(2 << 30), cpu: Some(Duration::from_secs(600)), nproc: Some(256) };
    let free = agent_role("free", &[]);
    let swarm = start(vec![limited, free]).await;
    let pids: BTreeSet<u32> = swarm.agents().await.iter().map(|a| a.pid).collect();

    let opened = call(&swarm, "limited", "open-files", json!({ "n": 100 })).await.expect("answered");
    // fds 0..=31 are the 32 allowed; the open that would be the 33rd fails.
    assert_eq!(opened["errno"], json!(libc::EMFILE), "{opened}");
    assert_eq!(opened["highestFd"], json!(31), "{opened}");
    // The agent lives on, and says so.
    assert_eq!(call(&swarm, "limited", "echo", json!([1])).await.expect("echo"), json!([1]));

    let pid = call(&swarm, "limited", "pid", json!([])).await.expect("pid").as_u64().expect("a pid") as u32;
    assert_eq!(proc_limit(pid, "Max open files"), ("32".to_owned(), "32".to_owned()));
    assert_eq!(proc_limit(pid, "Max data size"), ((2_u64 << 30).to_string(), (2_u64 << 30).to_string()));
    assert_eq!(proc_limit(pid, "Max cpu time"), ("600".to_owned(), "601".to_owned()));
    assert_eq!(proc_limit(pid, "Max processes"), ("256".to_owned(), "256".to_owned()));
    assert_eq!(proc_limit(pid, "Max address space").0, "unlimited", "RLIMIT_AS must stay untouched");

    // Neither skep nor a role without rlimits is affected.
    assert_eq!(rustix::process::getrlimit(rustix::process::Resource::Nofile), before);
    let opened = call(&swarm, "free", "open-files", json!({ "n": 100 })).await.expect("answered");
    assert_eq!((opened["opened"].clone(), opened["errno"].clone()), (json!(100), Value::Null), "{opened}");
    let files: Vec<std::fs::File> =
        (0..64).map(|_| std::fs::File::open("/dev/null").expect("skep itself still opens files")).collect();
    drop(files);
    finish(swarm, &pids).await;
}

/// Resident bytes of `pid` per /proc/PID/statm.
fn proc_rss(pid: u32) -> u64 {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).expect("statm");
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).expect("resident pages");
    pages * procfs::page_size()
}

/// CPU time of `pid` in milliseconds per /proc/PID/stat (user + system).
fn proc_cpu_ms(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat.rsplit_once(") ").expect("a stat line").1.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    ticks * 1000 / procfs::ticks_per_second()
}

#[tokio::test]
async fn rss_and_cpu_in_the_agent_list_match_proc_for_a_known_allocation() {
    let role = agent_role("known", &["--grow-mb", "64"]);
    let swarm = start(vec![role]).await;
    call(&swarm, "known", "spin", json!({ "ms": 300 })).await.expect("spun");
    let pid = swarm.agents().await[0].pid;
    // The call kept 64 MiB and burnt CPU; the agent is idle now, so /proc's figures hold still.
    let (proc_rss, proc_cpu) = (proc_rss(pid), proc_cpu_ms(pid));
    assert!(proc_rss >= 64 * MIB, "/proc says {proc_rss} B after keeping 64 MiB");
    // Loose bounds: the kernel's RSS counters are batched per CPU, and CPU time
    // is counted in ticks (10 ms at the usual 100 Hz): two of slack.
    let (rss, cpu_ms) = until(&swarm, "a sample taken after the call that agrees with /proc", |agents| {
        let a = agents.iter().find(|a| a.pid == pid)?;
        let (rss, cpu_ms) = a.rss_bytes.zip(a.cpu_ms)?;
        (rss.abs_diff(proc_rss) <= 4 * MIB && cpu_ms.abs_diff(proc_cpu) <= 20).then_some((rss, cpu_ms))
    })
    .await;
    assert!(rss >= 64 * MIB && cpu_ms > 0, "{rss} B, {cpu_ms} ms");
    let percent = until(&swarm, "a CPU percentage", |agents| agents.iter().find(|a| a.pid == pid)?.cpu_percent).await;
    assert!((0.0..=100.0 * 64.0).contains(&percent), "{percent}");

    // The role's sums are its agents' figures.
    let (agents, stats) = (swarm.agents().await, swarm.stats().await);
    assert_eq!(stats.roles[0].rss_bytes, agents.iter().filter_map(|a| a.rss_bytes).sum::<u64>());
    assert!(stats.roles[0].rss_bytes >= 64 * MIB);
    finish(swarm, &BTreeSet::from([pid])).await;
}

#[tokio::test]
async fn an_agents_cost_is_its_whole_process_group() {
    let swarm = start(vec![agent_role("tree", &["--grandchild"])]).await;
    let pid = swarm.agents().await[0].pid;
    let grandchild = call(&swarm, "tree", "grandchild", json!([])).await.expect("the grandchild's pid");
    let grandchild = grandchild.as_u64().expect("a pid") as u32;
    // A sample taken while the grandchild was between fork and exec saw a copy
    // of the agent's pages: wait for one that agrees with /proc now.
    let (rss, both) = until(&swarm, "a sample of both processes that agrees with /proc", |agents| {
        let a = agents.iter().find(|a| a.pid == pid)?;
        let both = proc_rss(pid) + proc_rss(grandchild);
        let rss = a.rss_bytes.filter(|_| a.processes == Some(2))?;
        (rss.abs_diff(both) <= MIB).then_some((rss, both))
    })
    .await;
    assert!(rss > proc_rss(pid), "the grandchild's memory was not counted: {rss} B of {both} B");
    finish(swarm, &BTreeSet::from([pid])).await;
    // SIGKILLed with its group; init reaps it when it gets to it.
    skep_testkit::wait_gone(&[grandchild], "the agent's grandchild").await;
}
