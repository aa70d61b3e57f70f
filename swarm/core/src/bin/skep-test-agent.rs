//! skep-test-agent: a deliberately simple NDJSON JSON-RPC 2.0 agent for tests.
//!
//! It is a test double for misbehaving peers, so it shares no code with skep's
//! bridge: a blocking stdin loop, one reply line per request, flushed at once.
//! Flags choose how it misbehaves; see `USAGE`.

use std::io::{self, BufRead, Write};
use std::process::{Command, Stdio, exit};
use std::time::Duration;

use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

const USAGE: &str = "\
usage: skep-test-agent [FLAGS]

An NDJSON JSON-RPC 2.0 agent on stdin/stdout. Exits 0 on stdin EOF.
Methods: echo, echo-raw (params' exact text back), sleep {ms}, spin {ms} (burn CPU), pid,
fail {code?, message?}, initialize,
crash {code?}, env, cwd, grandchild, cancelled (ids named by $/cancelRequest),
open-files {n} (opens /dev/null up to n times and keeps them open; answers
{opened, highestFd, errno}: errno is null, or why the first failed open failed),
spin {ms} (burns CPU for ms milliseconds),
progress {steps} (sends `$/progress` for the call `steps` times, then answers steps),
overlaps ({pid, overlaps}: with --count-overlaps, how many replies found another
request already sent).

Flags (combinable):
  --crash-after N        exit(3) on receiving call N+1, without answering
  --hang                 read requests, never answer
  --garbage-stdout       print a non-JSON line before each reply
  --stderr-flood         write to stderr as fast as possible, forever
  --ignore-sigterm       ignore SIGTERM
  --crash-at-startup     write a line to stderr, then exit(2)
  --grandchild           spawn `sleep 1000` sharing stdout/stderr, then serve
  --no-newline-flood     write bytes without a newline to stdout, forever
  --no-read              never read stdin; sleep forever
  --ignore-eof           on stdin EOF, keep running (sleep forever)
  --startup-delay-ms N   sleep N ms before serving
  --stderr-lines N       print N lines to stderr at start
  --grow-mb N            keep N MiB more (written, so resident) with each request
                         other than initialize, before answering it
  --tag N                ignored; lets a test find its own agents in /proc
  --journal DIR          append each request read (method and params, one JSON
                         line, before it runs) to DIR/<pid>.jsonl, so a test can
                         see what ran and how often
  --count-overlaps       before each reply, look whether another request is already
                         waiting (sent before this one was answered) and count it
                         for `overlaps`: calls the agent was given at once
  --help                 print this help
";

/// Exit code for a bad command line (EX_USAGE).
const EX_USAGE: i32 = 64;

#[derive(Debug, Default)]
struct Flags {
    crash_after: Option<u64>,
    hang: bool,
    garbage_stdout: bool,
    stderr_flood: bool,
    ignore_sigterm: bool,
    crash_at_startup: bool,
    grandchild: bool,
    no_newline_flood: bool,
    no_read: bool,
    ignore_eof: bool,
    startup_delay_ms: u64,
    stderr_lines: u64,
    grow_mb: u64,
    journal: Option<std::path::PathBuf>,
    count_overlaps: bool,
}

/// `Ok(None)` means `--help`.
fn parse_flags(mut args: impl Iterator<Item = String>) -> Result<Option<Flags>, String> {
    let mut flags = Flags::default();
    while let Some(arg) = args.next() {
        let mut number = |name: &str| -> Result<u64, String> {
            let value = args.next().ok_or_else(|| format!("{name} needs a number"))?;
            value.parse().map_err(|_| format!("{name}: not a number: {value:?}"))
        };
        match arg.as_str() {
            "--help" | "-h" => return Ok(None),
            "--crash-after" => flags.crash_after = Some(number("--crash-after")?),
            "--hang" => flags.hang = true,
            "--count-overlaps" => flags.count_overlaps = true,
            "--garbage-stdout" => flags.garbage_stdout = true,
            "--stderr-flood" => flags.stderr_flood = true,
            "--ignore-sigterm" => flags.ignore_sigterm = true,
            "--crash-at-startup" => flags.crash_at_startup = true,
            "--grandchild" => flags.grandchild = true,
            "--no-newline-flood" => flags.no_newline_flood = true,
            "--no-read" => flags.no_read = true,
            "--ignore-eof" => flags.ignore_eof = true,
            "--startup-delay-ms" => flags.startup_delay_ms = number("--startup-delay-ms")?,
            "--stderr-lines" => flags.stderr_lines = number("--stderr-lines")?,
            "--grow-mb" => flags.grow_mb = number("--grow-mb")?,
            "--tag" => drop(number("--tag")?),
            "--journal" => flags.journal = Some(args.next().ok_or("--journal needs a directory")?.into()),
            other => return Err(format!("unknown flag {other:?}")),
        }
    }
    Ok(Some(flags))
}

fn main() {
    let flags = match parse_flags(std::env::args().skip(1)) {
        Ok(Some(flags)) => flags,
        Ok(None) => {
            let _ = io::stdout().write_all(USAGE.as_bytes());
            return;
        }
        Err(message) => {
            eprintln!("skep-test-agent: {message}\n\n{USAGE}");
            exit(EX_USAGE);
        }
    };
    if flags.ignore_sigterm {
        // SAFETY: setting a disposition to SIG_IGN installs no handler code.
        unsafe { libc::signal(libc::SIGTERM, libc::SIG_IGN) };
    }
    if flags.crash_at_startup {
        eprintln!("skep-test-agent: crashing at startup as asked");
        exit(2);
    }
    if flags.startup_delay_ms > 0 {
        std::thread::sleep(Duration::from_millis(flags.startup_delay_ms));
    }
    for i in 0..flags.stderr_lines {
        eprintln!("skep-test-agent: stderr line {i}");
    }
    let grandchild = flags.grandchild.then(spawn_grandchild);
    if flags.stderr_flood {
        std::thread::spawn(flood_stderr);
    }
    if flags.no_newline_flood {
        flood_stdout_without_newline();
    }
    if flags.no_read {
        sleep_forever();
    }
    GROW_MIB.store(flags.grow_mb, std::sync::atomic::Ordering::Relaxed);
    serve(&flags, grandchild);
    if flags.ignore_eof {
        sleep_forever();
    }
}

fn serve(flags: &Flags, grandchild: Option<u32>) {
    // Our own buffer, larger than the lock's, so reads bypass that one and
    // `buffer()` shows every byte read ahead (for `--count-overlaps`).
    let mut stdin = io::BufReader::with_capacity(1 << 16, io::stdin().lock());
    let mut stdout = io::stdout().lock();
    let mut line = Vec::new();
    let mut calls = 0_u64;
    let mut journal = flags.journal.as_ref().map(|dir| open_journal(dir));
    loop {
        line.clear();
        match stdin.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        calls += 1;
        if let Some(journal) = &mut journal {
            write_journal(journal, &line);
        }
        if flags.crash_after.is_some_and(|n| calls > n) {
            exit(3);
        }
        if flags.hang {
            continue;
        }
        let reply = match echo_raw(&line) {
            Some(reply) => reply,
            None => match handle(&line, grandchild) {
                Some(reply) => reply.to_string(),
                None => continue,
            },
        };
        if flags.count_overlaps && another_waiting(&stdin) {
            OVERLAPS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        let mut text = if flags.garbage_stdout { "log: hello from agent\n".to_owned() } else { String::new() };
        text.push_str(&progress_lines(&line));
        text.push_str(&reply);
        text.push('\n');
        if stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()).is_err() {
            // Nobody reads our replies any more: same as EOF.
            return;
        }
    }
}

/// An `echo-raw` request, read without decoding its params.
#[derive(serde::Deserialize)]
struct RawRequest<'a> {
    #[serde(borrow)]
    id: Option<&'a RawValue>,
    method: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    params: Option<&'a RawValue>,
}

/// The reply to an `echo-raw` request: its params' text, byte for byte
/// (a `Value` would round big numbers and refuse lone surrogates).
fn echo_raw(line: &[u8]) -> Option<String> {
    let request: RawRequest<'_> = serde_json::from_slice(line).ok()?;
    if request.method != "echo-raw" {
        return None;
    }
    let (id, params) = (request.id?.get(), request.params.map_or("null", RawValue::get));
    Some(format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{params}}}"#))
}

/// For a `progress {steps}` request: one `$/progress` line per step, naming it.
fn progress_lines(line: &[u8]) -> String {
    let Ok(request) = serde_json::from_slice::<Value>(line) else { return String::new() };
    if request["method"] != "progress" {
        return String::new();
    }
    let steps = request["params"]["steps"].as_u64().unwrap_or(0);
    (1..=steps)
        .map(|step| {
            let params =
                json!({"id": request["id"], "fraction": step as f64 / steps as f64, "message": format!("step {step}")});
            format!("{}\n", json!({"jsonrpc": "2.0", "method": "$/progress", "params": params}))
        })
        .collect()
}

/// The reply to one line, or `None` for a notification.
fn handle(line: &[u8], grandchild: Option<u32>) -> Option<Value> {
    let request: Value = match serde_json::from_slice(line) {
        Ok(request) => request,
        Err(e) => return Some(error(Value::Null, -32700, &format!("parse error: {e}"))),
    };
    let Some(object) = request.as_object() else {
        return Some(error(Value::Null, -32600, "invalid request: not an object"));
    };
    let id = object.get("id").cloned();
    let Some(method) = object.get("method").and_then(Value::as_str) else {
        return Some(error(id.unwrap_or(Value::Null), -32600, "invalid request: no method"));
    };
    let params = object.get("params").cloned().unwrap_or(Value::Null);
    let outcome = call(method, &params, grandchild);
    let id = id?;
    Some(match outcome {
        Ok(result) => json!({"jsonrpc": "2.0", "id": id, "result": result}),
        Err((code, message)) => error(id, code, &message),
    })
}

/// This process's CPU time (user + system).
fn cpu_time() -> Duration {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec through a valid pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut t) };
    Duration::new(t.tv_sec.max(0) as u64, t.tv_nsec.clamp(0, 999_999_999) as u32)
}
/// `--count-overlaps`: replies that found another request already sent.
static OVERLAPS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Whether a request is waiting, read ahead or still in the pipe.
fn another_waiting(stdin: &io::BufReader<io::StdinLock<'_>>) -> bool {
    if !stdin.buffer().iter().all(u8::is_ascii_whitespace) {
        return true;
    }
    let mut fd = libc::pollfd { fd: 0, events: libc::POLLIN, revents: 0 };
    // SAFETY: poll reads and writes one pollfd through a valid pointer; a zero timeout never blocks.
    let ready = unsafe { libc::poll(&mut fd, 1, 0) };
    ready > 0 && fd.revents & libc::POLLIN != 0
}

/// `--grow-mb`, for `call`.
static GROW_MIB: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn call(method: &str, params: &Value, grandchild: Option<u32>) -> Result<Value, (i64, String)> {
    let grow_mib = GROW_MIB.load(std::sync::atomic::Ordering::Relaxed);
    if grow_mib > 0 && method != "initialize" {
        grow(grow_mib);
    }
    match method {
        "echo" => Ok(params.clone()),
        "sleep" => {
            let ms = params.get("ms").and_then(Value::as_u64).ok_or((-32602, "sleep needs {\"ms\": N}".to_owned()))?;
            std::thread::sleep(Duration::from_millis(ms));
            Ok(json!({"slept": ms}))
        }
        "spin" => {
            // Burns CPU (not wall time) until the process has used `ms` more of it.
            let ms = params.get("ms").and_then(Value::as_u64).ok_or((-32602, "spin needs {\"ms\": N}".to_owned()))?;
            let start = cpu_time();
            let mut x: u64 = 1;
            while cpu_time().saturating_sub(start) < Duration::from_millis(ms) {
                for _ in 0..10_000 {
                    x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
                }
            }
            Ok(json!({"spun": ms}))
        }
        "pid" => Ok(json!(std::process::id())),
        "overlaps" => Ok(json!({
            "pid": std::process::id(),
            "overlaps": OVERLAPS.load(std::sync::atomic::Ordering::Relaxed),
        })),
        "progress" => Ok(params["steps"].clone()),
        "fail" => {
            let code = params.get("code").and_then(Value::as_i64).unwrap_or(-32000);
            let message = params.get("message").and_then(Value::as_str).unwrap_or("failed as asked");
            Err((code, message.to_owned()))
        }
        "initialize" => Ok(json!({"name": "skep-test-agent"})),
        "crash" => {
            let code = params.get("code").and_then(Value::as_i64).unwrap_or(3);
            exit(i32::try_from(code).unwrap_or(3));
        }
        "env" => {
            let vars: Map<String, Value> = std::env::vars_os()
                .map(|(k, v)| (k.to_string_lossy().into_owned(), Value::from(v.to_string_lossy().into_owned())))
                .collect();
            Ok(Value::Object(vars))
        }
        "cwd" => std::env::current_dir()
            .map(|dir| Value::from(dir.to_string_lossy().into_owned()))
            .map_err(|e| (-32000, format!("no cwd: {e}"))),
        "grandchild" => Ok(grandchild.map_or(Value::Null, Value::from)),
        // Remembered so tests can see which of our ids skep cancelled.
        "$/cancelRequest" => {
            cancelled().push(params.get("id").cloned().unwrap_or(Value::Null));
            Ok(Value::Null)
        }
        "cancelled" => Ok(Value::Array(cancelled().clone())),
        "open-files" => {
            let n =
                params.get("n").and_then(Value::as_u64).ok_or((-32602, "open-files needs {\"n\": N}".to_owned()))?;
            Ok(open_files(n))
        }
        other => Err((-32601, format!("method not found: {other}"))),
    }
}

/// `--journal`: this agent's own file in the directory.
fn open_journal(dir: &std::path::Path) -> std::fs::File {
    let path = dir.join(format!("{}.jsonl", std::process::id()));
    match std::fs::OpenOptions::new().create(true).append(true).open(&path) {
        Ok(file) => file,
        Err(e) => {
            eprintln!("skep-test-agent: cannot open the journal {}: {e}", path.display());
            exit(1);
        }
    }
}

/// One line per request read: `{"method", "params"}`, written before it runs.
fn write_journal(journal: &mut std::fs::File, line: &[u8]) {
    let Ok(request) = serde_json::from_slice::<Value>(line) else { return };
    let mut entry = json!({"method": request["method"], "params": request["params"]}).to_string();
    entry.push('\n');
    // One write(2) per line: `writeln!` on a File writes each formatted piece
    // separately, so a reader (or a SIGKILL) could meet half a line.
    if journal.write_all(entry.as_bytes()).is_err() {
        eprintln!("skep-test-agent: cannot write the journal");
        exit(1);
    }
}

/// Ids named by `$/cancelRequest` notifications so far.
fn cancelled() -> std::sync::MutexGuard<'static, Vec<Value>> {
    static CANCELLED: std::sync::Mutex<Vec<Value>> = std::sync::Mutex::new(Vec::new());
    CANCELLED.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Memory kept for the agent's life, as a leaking SDK would.
fn grow(mib: u64) {
    static KEPT: std::sync::Mutex<Vec<Vec<u8>>> = std::sync::Mutex::new(Vec::new());
    let size = usize::try_from(mib << 20).unwrap_or(usize::MAX);
    // Written, not just reserved: only touched pages are resident.
    let block = vec![0x5a_u8; size];
    KEPT.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(block);
}

/// Opens /dev/null until `n` are open or an open fails; keeps them open.
fn open_files(n: u64) -> Value {
    static OPEN: std::sync::Mutex<Vec<std::fs::File>> = std::sync::Mutex::new(Vec::new());
    let mut open = OPEN.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let (mut opened, mut errno) = (0_u64, Value::Null);
    while opened < n {
        match std::fs::File::open("/dev/null") {
            Ok(file) => {
                open.push(file);
                opened += 1;
            }
            Err(e) => {
                errno = e.raw_os_error().map_or(Value::Null, Value::from);
                break;
            }
        }
    }
    let highest = open.iter().map(std::os::fd::AsRawFd::as_raw_fd).max();
    json!({"opened": opened, "highestFd": highest, "errno": errno})
}

fn error(id: Value, code: i64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

/// Starts `sleep 1000` in our process group, holding our stdout and stderr.
fn spawn_grandchild() -> u32 {
    match Command::new("sleep").arg("1000").stdin(Stdio::null()).spawn() {
        Ok(child) => child.id(),
        Err(e) => {
            eprintln!("skep-test-agent: cannot start the grandchild: {e}");
            exit(1);
        }
    }
}

fn flood_stderr() {
    let padding = "x".repeat(100);
    for n in 0_u64.. {
        if writeln!(io::stderr(), "flood {n:012} {padding}").is_err() {
            return;
        }
    }
}

fn flood_stdout_without_newline() -> ! {
    let chunk = [b'x'; 8192];
    let mut stdout = io::stdout().lock();
    loop {
        if stdout.write_all(&chunk).and_then(|()| stdout.flush()).is_err() {
            exit(0);
        }
    }
}

fn sleep_forever() -> ! {
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}
