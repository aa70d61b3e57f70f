//! What the runner needs before it measures: the release binaries, GNU
//! parallel, the npm peers, and a real Python interpreter path.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};

/// Paths the scenarios use.
#[derive(Debug, Clone)]
pub struct Env {
    /// The release binaries (`skep`, `bridge-echo`, `raw-echo`, `raw-relay`, `jsonrpsee-echo`).
    pub bin: PathBuf,
    /// `benches/peers`: the peers' driver code and their `node_modules`.
    pub peers: PathBuf,
    /// The Python interpreter itself (not a version-manager shim, whose own start-up would be counted).
    pub python: PathBuf,
    /// Where generated configs and inputs go.
    pub scratch: PathBuf,
}

impl Env {
    /// Builds the binaries and installs missing peers, then locates everything.
    pub fn prepare() -> anyhow::Result<Env> {
        let root = root();
        eprintln!("== building the release binaries");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        run(Command::new(cargo).current_dir(&root).args([
            "build",
            "--release",
            "--locked",
            "-p",
            "skep",
            "--bin",
            "skep",
            "-p",
            "skep-benches",
            "--bins",
        ]))?;
        if !on_path("parallel") {
            // SAFETY: geteuid has no preconditions and cannot fail.
            if unsafe { libc::geteuid() } != 0 {
                bail!("GNU parallel is missing: install it with `sudo apt-get install -y parallel`, then run again");
            }
            eprintln!("== installing GNU parallel (Debian package `parallel`)");
            run(Command::new("apt-get").args(["install", "-y", "-qq", "parallel"]))?;
        }
        let peers = root.join("benches/peers");
        if !peers.join("node_modules/vscode-jsonrpc").is_dir() {
            eprintln!("== installing the npm peers (benches/peers/package-lock.json)");
            run(Command::new("npm").current_dir(&peers).args(["ci", "--no-audit", "--no-fund"]))
                .context("npm ci in benches/peers (is Node installed? `apt-get install -y nodejs npm`)")?;
        }
        Env::locate()
    }

    /// Locates everything, building and installing nothing.
    pub fn locate() -> anyhow::Result<Env> {
        let root = root();
        let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
        let bin = target.join("release");
        for name in ["skep", "bridge-echo", "raw-echo", "raw-relay", "jsonrpsee-echo"] {
            if !bin.join(name).is_file() {
                bail!("{} is missing: run `cargo build --release -p skep -p skep-benches`", bin.join(name).display());
            }
        }
        for tool in ["parallel", "xargs", "node", "python3"] {
            if !on_path(tool) {
                bail!(
                    "`{tool}` is not on PATH: run without --no-setup, or install it (Debian: apt-get install -y {tool})"
                );
            }
        }
        let peers = root.join("benches/peers");
        if !peers.join("node_modules/vscode-jsonrpc").is_dir() {
            bail!("the npm peers are not installed: run `npm ci` in {}", peers.display());
        }
        let out = Command::new("python3")
            .args(["-c", "import sys; print(sys.executable)"])
            .output()
            .context("running python3")?;
        let python = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if !python.is_file() {
            bail!("python3 did not say where its interpreter is (got {python:?})");
        }
        let scratch = target.join("compare");
        std::fs::create_dir_all(&scratch).with_context(|| format!("creating {}", scratch.display()))?;
        Ok(Env { bin, peers, python, scratch })
    }

    /// A release binary's path, as a string for configs and argv.
    pub fn exe(&self, name: &str) -> String {
        self.bin.join(name).display().to_string()
    }

    /// A peer script's path.
    pub fn peer(&self, name: &str) -> String {
        self.peers.join(name).display().to_string()
    }

    /// Writes `text` to a scratch file and returns its path.
    pub fn scratch_file(&self, name: &str, text: &str) -> anyhow::Result<PathBuf> {
        let path = self.scratch.join(name);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("benches/ sits in the workspace root").to_path_buf()
}

fn on_path(tool: &str) -> bool {
    Command::new("sh").args(["-c", &format!("command -v {tool}")]).output().is_ok_and(|o| o.status.success())
}

fn run(command: &mut Command) -> anyhow::Result<()> {
    let status = command.status().with_context(|| format!("starting {command:?}"))?;
    if !status.success() {
        bail!("{command:?} failed: {status}");
    }
    Ok(())
}

/// The machine, for the report: CPU, cores, memory, kernel, load, date.
pub fn machine() -> String {
    let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
    let cpu = read("/proc/cpuinfo")
        .lines()
        .find_map(|l| l.strip_prefix("model name").map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned()))
        .unwrap_or_else(|| "unknown CPU".into());
    let mem_gib = read("/proc/meminfo")
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:").and_then(|v| v.trim().trim_end_matches(" kB").parse::<f64>().ok()))
        .map_or(0.0, |kib| kib / 1024.0 / 1024.0);
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let shell = |cmd: &str| {
        Command::new("sh")
            .args(["-c", cmd])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default()
    };
    format!(
        "Machine: {cores} cores ({cpu}), {mem_gib:.0} GiB RAM, Linux {}; load average at the end {}; {}.",
        shell("uname -r"),
        read("/proc/loadavg").split_whitespace().take(3).collect::<Vec<_>>().join(" "),
        shell("date -u '+%Y-%m-%d %H:%M UTC'")
    )
}
