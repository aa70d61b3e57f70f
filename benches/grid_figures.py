#!/usr/bin/env python3
"""Figures for the grid: how fast a call becomes visible in its agent's pane,
and what watching costs the orchestrator.

    cargo build --release -p skep && python3 benches/grid_figures.py [--quick]

Setup: one `skep serve --observe` with 32 demo agents, driven at 100 calls/s
per agent (3,200 echo calls/s, paced every 10 ms), and the 32 processes a grid
runs for its agent panes (`skep grid-pane`), their output read from pipes.

- Latency: every 50 ms a probe call with a unique method name (`probe-N`; the
  agent answers -32601 at once) is written to the sidecar; the time until
  some pane's output contains `probe-N`. It covers the sidecar reading the
  call, the agent round trip, the event over the observe socket, the pane's
  frame coalescing (<= 60/s) and its redraw; not tmux painting the terminal.
- CPU: the orchestrator's user+system time (from /proc) over the same load,
  with the 32 pane processes watching, then with nobody watching.
"""
import json
import os
import selectors
import shutil
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SKEP = os.path.join(ROOT, "target", "release", "skep")
QUICK = "--quick" in sys.argv
AGENTS = 32
RATE = 100  # calls per second per agent
SECONDS = 5 if QUICK else 15
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


class Load(threading.Thread):
    """Writes AGENTS*RATE echo calls per second to the sidecar, in 10 ms batches."""

    def __init__(self, stdin):
        super().__init__(daemon=True)
        self.stdin, self.stop, self.sent, self.lock = stdin, threading.Event(), 0, threading.Lock()

    def run(self):
        per_tick = AGENTS * RATE // 100
        head = '{"jsonrpc":"2.0","method":"swarm/call","params":{"role":"load","method":"echo","params":{"x":1}},"id":'
        next_at = time.monotonic()
        while not self.stop.is_set():
            # Ids must be unique among calls in flight, or the sidecar refuses the duplicates.
            batch = "".join(f"{head}{self.sent + i + 1}}}\n" for i in range(per_tick)).encode()
            with self.lock:
                self.stdin.write(batch)
                self.stdin.flush()
            self.sent += per_tick
            next_at += 0.01
            time.sleep(max(0.0, next_at - time.monotonic()))

    def probe(self, n):
        line = json.dumps({"jsonrpc": "2.0", "id": f"probe-{n}", "method": "swarm/call",
                           "params": {"role": "load", "method": f"probe-{n}", "params": {}}}) + "\n"
        with self.lock:
            self.stdin.write(line.encode())
            self.stdin.flush()


ANSWERS = {"result": 0, "error": 0}


def drain(stream):
    """Reads the sidecar's answers, counting results and errors."""
    for line in stream:
        ANSWERS["result" if b'"result"' in line else "error"] += 1


def main():
    tmp = tempfile.mkdtemp(prefix="skep-grid-bench-")
    os.chmod(tmp, 0o700)
    config = os.path.join(tmp, "skep.toml")
    with open(config, "w") as f:
        f.write(f'[roles.load]\ncommand = ["{SKEP}", "agent", "demo"]\nmin_warm = {AGENTS}\nmax_agents = {AGENTS}\n'
                'queue_timeout = "30s"\n')
    sock = os.path.join(tmp, "obs", "bench.sock")
    env = dict(os.environ, XDG_RUNTIME_DIR=tmp)
    serve = subprocess.Popen([SKEP, "serve", "--config", config, "--observe", sock], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    threading.Thread(target=drain, args=(serve.stdout,), daemon=True).start()
    while not os.path.exists(sock):
        time.sleep(0.05)
    load = Load(serve.stdin)
    load.start()
    time.sleep(1)

    def measure_cpu():
        t0, c0 = time.monotonic(), cpu_seconds(serve.pid)
        time.sleep(SECONDS)
        return (cpu_seconds(serve.pid) - c0) / (time.monotonic() - t0)

    idle_cpu = measure_cpu()
    panes = [subprocess.Popen([SKEP, "grid-pane", "--attach", sock, "--agent", f"load/{i}"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
             for i in range(1, AGENTS + 1)]
    sel = selectors.DefaultSelector()
    for p in panes:
        os.set_blocking(p.stdout.fileno(), False)
        sel.register(p.stdout, selectors.EVENT_READ, p)
    pending, latencies, n = {}, [], 0
    tails = {p.pid: b"" for p in panes}
    started = time.monotonic()
    next_probe = started + 1
    c0 = cpu_seconds(serve.pid)
    pane_c0 = sum(cpu_seconds(p.pid) for p in panes)
    while time.monotonic() - started < SECONDS + 1:
        now = time.monotonic()
        if now >= next_probe:
            n += 1
            pending[f"probe-{n}".encode()] = time.monotonic()
            load.probe(n)
            next_probe += 0.05
        for key, _ in sel.select(timeout=0.002):
            data = key.fileobj.read()
            if not data:
                continue
            seen = time.monotonic()
            text = tails[key.data.pid] + data
            for name in [k for k in pending if k in text]:
                latencies.append((seen - pending.pop(name)) * 1000)
            tails[key.data.pid] = text[-64:]
    watched_cpu = (cpu_seconds(serve.pid) - c0) / (time.monotonic() - started)
    panes_cpu = (sum(cpu_seconds(p.pid) for p in panes) - pane_c0) / (time.monotonic() - started)
    load.stop.set()
    for p in panes:
        p.kill()
        p.wait()
    serve.stdin.close()
    serve.wait(timeout=60)
    shutil.rmtree(tmp, ignore_errors=True)
    latencies.sort()
    pct = lambda q: latencies[min(len(latencies) - 1, int(len(latencies) * q))]
    print(f"| figure | value |\n| --- | --- |")
    print(f"| load | {AGENTS} agents x {RATE} calls/s = {AGENTS * RATE} calls/s for {SECONDS} s per phase |")
    print(f"| answers | {ANSWERS['result']} results, {ANSWERS['error']} errors (the probes: -32601) of {load.sent} calls |")
    print(f"| probe call -> visible in pane, p50 | {pct(0.5):.1f} ms ({len(latencies)} probes, {len(pending)} unseen) |")
    print(f"| probe call -> visible in pane, p99 | {pct(0.99):.1f} ms |")
    print(f"| orchestrator CPU, nobody watching | {idle_cpu * 100:.0f}% of a core |")
    print(f"| orchestrator CPU, 32 panes watching | {watched_cpu * 100:.0f}% of a core |")
    print(f"| the 32 pane processes together | {panes_cpu * 100:.0f}% of a core |")


if __name__ == "__main__":
    main()
