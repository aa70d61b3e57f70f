#!/usr/bin/env python3
"""Figures for the sidecar (`skep serve`), each measured against its
comparison in the same run, through real pipes from one driver process.

    cargo build --release -p skep && python3 benches/sidecar_figures.py [--quick]

Prints a markdown table. The driver's own cost (Python, one pipe write and
one line read per call) is in both sides of every comparison, so differences
and ratios are fair; absolute figures include it.
"""
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SKEP = os.path.join(ROOT, "target", "release", "skep")
ECHO_PY = os.path.join(ROOT, "examples", "agents", "echo.py")
QUICK = "--quick" in sys.argv
N = 300 if QUICK else 3000


def spawn(argv, **kw):
    return subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, **kw)


class Peer:
    """A newline JSON-RPC peer on a child's pipes."""

    def __init__(self, proc):
        self.proc, self.next_id = proc, 0

    def call(self, method, params):
        self.next_id += 1
        line = json.dumps({"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params}) + "\n"
        self.proc.stdin.write(line.encode())
        self.proc.stdin.flush()
        reply = json.loads(self.proc.stdout.readline())
        if "error" in reply:
            raise RuntimeError(reply["error"])
        return reply["result"]

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


def timed(fn, n):
    """Median and p99 in microseconds of n calls of fn."""
    samples = []
    for _ in range(n):
        t = time.perf_counter_ns()
        fn()
        samples.append((time.perf_counter_ns() - t) / 1000)
    samples.sort()
    return statistics.median(samples), samples[min(len(samples) - 1, int(len(samples) * 0.99))]


def config(text):
    f = tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False)
    f.write(text)
    f.close()
    return f.name


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))


def serve(cfg=None):
    return Peer(spawn([SKEP, "serve"] + (["--config", cfg] if cfg else [])))


rows = []


def row(what, skep, other, note=""):
    rows.append((what, skep, other, note))


def main():
    if not os.path.exists(SKEP):
        sys.exit("build first: cargo build --release -p skep")
    py_roles = config(
        '[roles.py]\ncommand = ["python3", "%s"]\nmin_warm = 1\nmax_agents = 1\n'
        '[roles.py-cached]\ncommand = ["python3", "%s"]\nmin_warm = 1\nmax_agents = 1\nidempotent = ["echo"]\n'
        '[roles.sleepy]\ncommand = ["%s", "agent", "demo"]\nmin_warm = 5\nmax_agents = 5\n' % (ECHO_PY, ECHO_PY, SKEP)
    )
    params = {"text": "x" * 100}

    # 1. A warm Python agent: through skep serve vs a direct pipe to the same agent.
    direct = Peer(spawn(["python3", ECHO_PY]))
    direct.call("echo", params)
    sidecar = serve(py_roles)
    via = lambda: sidecar.call("swarm/call", {"role": "py", "method": "echo", "params": params})
    via()
    d50, d99 = timed(lambda: direct.call("echo", params), N)
    s50, s99 = timed(via, N)
    row("call to a warm Python agent, p50 (p99)", "%.0f µs (%.0f)" % (s50, s99), "%.0f µs (%.0f) direct pipe" % (d50, d99),
        "skep adds %.0f µs at p50" % (s50 - d50))

    # 2. The same call, spawning the Python agent per call.
    def cold():
        p = Peer(spawn(["python3", ECHO_PY]))
        p.call("echo", params)
        p.close()
    c50, c99 = timed(cold, 20 if QUICK else 100)
    row("the same call, a new Python process per call, p50 (p99)", "%.0f µs" % s50, "%.0f µs (%.0f)" % (c50, c99),
        "warm is %.0f× faster" % (c50 / s50))

    # 3. Cached idempotent call vs uncached, through the sidecar.
    cached = lambda: sidecar.call("swarm/call", {"role": "py-cached", "method": "echo", "params": params})
    cached()
    h50, _ = timed(cached, N)
    row("idempotent call answered from the role cache, p50", "%.0f µs" % h50, "%.0f µs uncached" % s50,
        "cached is %.2f× the uncached time" % (h50 / s50))

    # 4. Fan-out to 5 agents that each sleep 50 ms.
    fan = lambda: sidecar.call("swarm/fanout", {"role": "sleepy", "method": "sleep", "params": [{"ms": 50}] * 5})
    fan()
    f50, f99 = timed(fan, 10 if QUICK else 50)
    row("fan-out to 5 agents sleeping 50 ms: total − 50 ms, p50 (p99)", "%.2f ms (%.2f)" % ((f50 - 50000) / 1000, (f99 - 50000) / 1000),
        "—", "the orchestration cost")

    # 5. A 1 MiB params payload through the sidecar vs a raw pipe copy (cat).
    big = {"blob": "y" * (1 << 20)}
    mib = lambda: sidecar.call("swarm/call", {"role": "sleepy", "method": "echo", "params": big})
    mib()
    m50, _ = timed(mib, 10 if QUICK else 50)
    cat = spawn(["cat"])
    line = (json.dumps(big) + "\n").encode()

    def copy():
        # Written from a thread: cat echoes while we write, and pipes hold 64 KiB.
        writer = threading.Thread(target=lambda: (cat.stdin.write(line), cat.stdin.flush()))
        writer.start()
        cat.stdout.readline()
        writer.join()
    r50, _ = timed(copy, 10 if QUICK else 50)
    cat.stdin.close()
    cat.wait()
    row("1 MiB params, there and back: throughput", "%.0f MiB/s" % (2e6 / m50), "%.0f MiB/s cat" % (2e6 / r50),
        "%.2f× of the raw pipe" % (r50 / m50))
    sidecar.close()
    direct.close()

    # 6. Start to first answered call, and idle RSS, of skep serve with the demo role.
    starts, rss = [], []
    for _ in range(5 if QUICK else 20):
        t = time.perf_counter_ns()
        p = serve()
        p.call("swarm/call", {"role": "demo", "method": "echo", "params": [1]})
        starts.append((time.perf_counter_ns() - t) / 1e6)
        rss.append(rss_kib(p.proc.pid))
        p.close()
    row("`skep serve` start to first answered call, p50", "%.1f ms" % statistics.median(starts), "—",
        "includes starting 2 demo agents")
    row("`skep serve` idle RSS (the orchestrator alone), median", "%.1f MiB" % (statistics.median(rss) / 1024), "—", "")

    # 7. 1,000 warm agents held by one orchestrator.
    if not QUICK:
        many = config('[roles.many]\ncommand = ["%s", "agent", "demo"]\nmin_warm = 1000\nmax_agents = 1000\n'
                      'startup_timeout = "120s"\n' % SKEP)
        p = serve(many)
        base = statistics.median(rss)
        agents = p.call("swarm/agents", [])
        held = rss_kib(p.proc.pid)
        row("1,000 warm agents: orchestrator RSS per agent", "%.1f KiB" % ((held - base) / len(agents)), "—",
            "%d agents, %.1f MiB in all" % (len(agents), held / 1024))
        p.close()

    print("| scenario | skep | comparison | note |")
    print("| --- | --- | --- | --- |")
    for r in rows:
        print("| %s | %s | %s | %s |" % r)


if __name__ == "__main__":
    main()
