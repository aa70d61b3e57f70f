//! A real nats-server on a free loopback port with a token, `skep worker`
//! processes, an in-process orchestrator with remote roles, and the agents'
//! journals: each held by a guard that kills what it started.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use skep_cluster::{RemoteClient, Workers};
use skep_swarm::{ClusterConfig, Config, Secret, Swarm};
use tokio::time::Instant;

pub const SKEP: &str = env!("CARGO_BIN_EXE_skep");
/// Bound on anything a test waits for (servers and workers start, processes end).
pub const LIMIT: Duration = Duration::from_secs(60);
pub const TOKEN: &str = "test-token-5c1f";

/// A child process killed (SIGKILL) and reaped when dropped.
pub struct Proc {
    pub child: Child,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, signal: libc::c_int) {
        // SAFETY: kill(2) with our own child's pid, not yet reaped (we hold it).
        assert_eq!(unsafe { libc::kill(self.pid() as libc::pid_t, signal) }, 0, "kill({signal})");
    }

    /// Waits (bounded by [`LIMIT`]) for the process to exit.
    pub async fn exited(&mut self) -> ExitStatus {
        let deadline = Instant::now() + LIMIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "pid {} did not exit within {LIMIT:?}", self.pid());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A nats-server on 127.0.0.1 that wants [`TOKEN`].
pub struct Nats {
    pub url: String,
    /// Held for its drop, which stops the server.
    _server: Proc,
}

fn nats_server_binary() -> PathBuf {
    let found = ["/usr/sbin/nats-server", "/usr/bin/nats-server", "/usr/local/bin/nats-server"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists());
    found.expect("nats-server is not installed: `apt-get install nats-server` (.ci/test does)")
}

impl Nats {
    pub async fn start() -> Nats {
        // The port is free now; a clash in the moment before the server binds fails the readiness wait loudly.
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("a free port").local_addr().expect("addr").port();
        let child = Command::new(nats_server_binary())
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "--auth", TOKEN])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server starts");
        let mut server = Proc { child };
        let deadline = Instant::now() + LIMIT;
        while TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err() {
            assert!(server.child.try_wait().expect("try_wait").is_none(), "nats-server exited at start");
            assert!(Instant::now() < deadline, "nats-server did not listen within {LIMIT:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Nats { url: format!("nats://127.0.0.1:{port}"), _server: server }
    }

    pub fn cluster(&self) -> ClusterConfig {
        ClusterConfig { token: Some(Secret::new(TOKEN.to_owned())), ..ClusterConfig::new(&self.url) }
    }
}

/// A scratch directory holding the worker's config and the agents' journals.
pub struct Scratch {
    pub dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> Scratch {
        Scratch { dir: tempfile::Builder::new().prefix("skep-cluster-").tempdir().expect("scratch dir") }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A worker config serving `roles` (name, extra TOML lines) with the test agent journaling here.
    pub fn worker_config(&self, roles: &[(&str, &str)]) -> PathBuf {
        self.worker_config_in("", roles)
    }

    /// The same, with `cluster` (TOML lines) as its `[cluster]` table when not empty.
    pub fn worker_config_in(&self, cluster: &str, roles: &[(&str, &str)]) -> PathBuf {
        let journal = self.path("journal");
        std::fs::create_dir_all(&journal).expect("journal dir");
        let agent = skep_testkit::test_agent();
        let text: String = roles
            .iter()
            .map(|(name, extra)| {
                format!(
                    "[roles.{name}]\ncommand = [{agent:?}, \"--journal\", {:?}]\n{extra}\n",
                    journal.display().to_string()
                )
            })
            .collect();
        let path = self.path("worker.toml");
        // `--nats` gives the server; the table is only for the other keys.
        let cluster = match cluster {
            "" => String::new(),
            keys => format!("[cluster]\nnats = \"nats://set-by-the-command-line\"\n{keys}\n"),
        };
        std::fs::write(&path, cluster + &text).expect("config written");
        path
    }

    /// Every journal line of every agent, by agent pid.
    pub fn journals(&self) -> BTreeMap<u32, Vec<Value>> {
        let Ok(entries) = std::fs::read_dir(self.path("journal")) else { return BTreeMap::new() };
        entries
            .filter_map(Result::ok)
            .filter_map(|e| {
                let pid = e.path().file_stem()?.to_str()?.parse().ok()?;
                let text = std::fs::read_to_string(e.path()).ok()?;
                let lines = text.lines().map(|l| serde_json::from_str(l).expect("a journal line is JSON")).collect();
                Some((pid, lines))
            })
            .collect()
    }
}

/// `skep worker --nats URL --config F`, with `token` in the environment and its stderr in `log`.
pub fn worker(nats: &Nats, config: &Path, token: &str, log: &Path) -> Proc {
    let log = std::fs::File::create(log).expect("worker log");
    let child = Command::new(SKEP)
        .args(["worker", "--nats", &nats.url, "--config"])
        .arg(config)
        .env("SKEP_NATS_TOKEN", token)
        .env("SKEP_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("skep worker starts");
    Proc { child }
}

/// One worker serving role `echo` (the test agent, journaling in `scratch`), once a listener has heard its heartbeat.
pub async fn echo_worker(nats: &Nats, scratch: &Scratch) -> Proc {
    let config = scratch.worker_config(&[("echo", "")]);
    let only = worker(nats, &config, TOKEN, &scratch.path("w0.log"));
    let watcher = RemoteClient::connect(&nats.cluster(), "test watcher").await.expect("connects");
    wait_workers(watcher.workers(), 1).await;
    only
}

/// An orchestrator with `roles` (TOML with remote roles) calling over `nats`, and its client (with the workers it hears).
pub async fn orchestrator(nats: &Nats, roles: &str) -> (Swarm, Arc<RemoteClient>) {
    let text = format!("[cluster]\nnats = {:?}\n{roles}", nats.url);
    let mut config = Config::parse(&text, "<test>", Path::new("/")).expect("the orchestrator's config parses");
    config.cluster = None;
    let cluster = nats.cluster();
    let remote = RemoteClient::connect(&cluster, "test orchestrator").await.expect("the orchestrator connects");
    let remote = Arc::new(remote);
    let swarm = Swarm::start(config).await.expect("the orchestrator starts");
    assert!(swarm.set_remote(remote.clone()));
    (swarm, remote)
}

/// Waits until exactly `n` live workers have sent a heartbeat.
pub async fn wait_workers(workers: &Workers, n: usize) -> Vec<u32> {
    let held = workers.wait_for(LIMIT, |alive| alive.len() == n).await;
    assert!(held, "expected {n} workers, heard from {:?}", workers.alive());
    workers.alive().into_iter().map(|w| w.pid).collect()
}

/// The parent pid of `pid`, from /proc.
pub fn parent_of(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix("PPid:")).and_then(|p| p.trim().parse().ok())
}

/// `skep` commands against the daemon of one orchestrator config (written
/// here with `[cluster]` and `roles`), in a private runtime dir; the daemon
/// is taken down when this is dropped, even after a failed assertion.
pub struct Cli<'a> {
    scratch: &'a Scratch,
    pub config: PathBuf,
    runs: std::cell::Cell<usize>,
}

impl<'a> Cli<'a> {
    pub fn new(scratch: &'a Scratch, nats: &Nats, roles: &str) -> Cli<'a> {
        let config = scratch.path("skep.toml");
        std::fs::write(&config, format!("[cluster]\nnats = {:?}\n{roles}", nats.url)).expect("config written");
        let run_dir = scratch.path("run");
        std::os::unix::fs::DirBuilderExt::mode(&mut std::fs::DirBuilder::new(), 0o700)
            .create(&run_dir)
            .expect("run dir");
        Cli { scratch, config, runs: std::cell::Cell::new(0) }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(SKEP);
        command
            .args(args)
            .env("XDG_RUNTIME_DIR", self.scratch.path("run"))
            .env("XDG_STATE_HOME", self.scratch.path("state"))
            .env("SKEP_NATS_TOKEN", TOKEN)
            .env_remove("SKEP_NO_DAEMON")
            .stdin(Stdio::null());
        command
    }

    /// Runs `skep ARGS --config <config>` to its end; its stdout, or a panic with its stderr.
    pub async fn run(&self, args: &[&str]) -> String {
        let mut command = self.command(args);
        command.arg("--config").arg(&self.config);
        self.finish(command, args).await
    }

    /// Runs `skep ARGS` (a command that takes no config, such as `ls`) in the same private dirs.
    pub async fn run_without_config(&self, args: &[&str]) -> String {
        self.finish(self.command(args), args).await
    }

    async fn finish(&self, mut command: Command, args: &[&str]) -> String {
        let n = self.runs.get();
        self.runs.set(n + 1);
        let (out, err) = (self.scratch.path(&format!("cli{n}.out")), self.scratch.path(&format!("cli{n}.err")));
        let child = command
            .stdout(std::fs::File::create(&out).expect("stdout file"))
            .stderr(std::fs::File::create(&err).expect("stderr file"))
            .spawn()
            .expect("skep starts");
        let status = Proc { child }.exited().await;
        let said = std::fs::read_to_string(&err).unwrap_or_default();
        assert!(status.success(), "skep {args:?} failed: {said}");
        std::fs::read_to_string(&out).expect("stdout")
    }

    /// The same, its stdout read as JSON.
    pub async fn json(&self, args: &[&str]) -> Value {
        let out = self.run(args).await;
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("skep {args:?} printed no JSON ({e}): {out}"))
    }
}

impl Drop for Cli<'_> {
    fn drop(&mut self) {
        let _ = self.command(&["down", "--config"]).arg(&self.config).output();
    }
}
