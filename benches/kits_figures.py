#!/usr/bin/env python3
"""The agent kits and preload mode, side by side in one run (issue 17).

    cargo build --release -p skep && python3 benches/kits_figures.py [--quick]

One `skep serve` serves five roles, all called from this driver through the
same sidecar, one call at a time:

- `percall`: `protocol = "command"`, a fresh `python3 tool.py` per call;
- `preload`: `protocol = "preload"`, the same unmodified tool.py forked from a
  warm parent that imported `heavy`;
- `kit`: the same logic as a kit agent (`benches/kits/kit_agent.py`);
- `echo_hand` / `echo_kit`: the hand-written echo agent of docs/agents.md
  (`examples/agents/echo.py`) against the kit's echo (`benches/kits/kit_echo.py`),
  also measured directly over a pipe without skep.

`benches/kits/heavy.py` costs about 300 ms of real work at import (standard-
library imports and a PBKDF2 key derivation); its import time is measured and
printed too. Prints a markdown table.
"""
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SKEP = os.path.join(ROOT, "target", "release", "skep")
BENCH = os.path.join(ROOT, "benches", "kits")
KIT = os.path.join(ROOT, "swarm", "kits", "python")
ECHO_PY = os.path.join(ROOT, "examples", "agents", "echo.py")
QUICK = "--quick" in sys.argv
COLD_N = 5 if QUICK else 20
WARM_N = 200 if QUICK else 2000
TEXT = "warm agents answer in microseconds where a fresh interpreter takes a third of a second"


class Peer:
    """A newline JSON-RPC peer on a child's pipes."""

    def __init__(self, argv, **kw):
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, **kw)
        self.next_id = 0

    def call(self, method, params):
        self.next_id += 1
        message = {"jsonrpc": "2.0", "id": self.next_id, "method": method}
        if params is not None:
            message["params"] = params
        line = json.dumps(message) + "\n"
        self.proc.stdin.write(line.encode())
        self.proc.stdin.flush()
        while True:
            reply = json.loads(self.proc.stdout.readline())
            if reply.get("id") == self.next_id:
                break  # skips relayed notifications
        if "error" in reply:
            raise RuntimeError(reply["error"])
        return reply["result"]

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def timed(peer, n, method, params):
    """Per-call wall times in seconds, after two warm-up calls."""
    for _ in range(2):
        peer.call(method, params)
    times = []
    for _ in range(n):
        start = time.perf_counter()
        peer.call(method, params)
        times.append(time.perf_counter() - start)
    return times


def p(times, q):
    return sorted(times)[min(len(times) - 1, int(q * len(times)))]


def show(seconds):
    if seconds >= 0.01:
        return f"{seconds * 1000:.0f} ms"
    if seconds >= 0.001:
        return f"{seconds * 1000:.2f} ms"
    return f"{seconds * 1e6:.0f} µs"


def import_time():
    code = "import time; t = time.perf_counter(); import heavy; print(time.perf_counter() - t)"
    runs = [float(subprocess.check_output([sys.executable, "-c", code], cwd=BENCH)) for _ in range(5)]
    return statistics.median(runs)


def config():
    python = json.dumps(sys.executable)
    tool = json.dumps(os.path.join(BENCH, "tool.py"))
    env = f'env = {{ PYTHONPATH = {json.dumps(KIT + os.pathsep + BENCH)} }}'
    return f"""
[roles.percall]
protocol = "command"
command = [{python}, {tool}]
cwd = {json.dumps(BENCH)}
max_agents = 1

[roles.preload]
protocol = "preload"
command = [{python}]
script = {tool}
preload = ["heavy"]
max_agents = 1

[roles.kit]
command = [{python}, {json.dumps(os.path.join(BENCH, "kit_agent.py"))}]
{env}
handshake = "initialize"
max_agents = 1

[roles.echo_hand]
command = [{python}, {json.dumps(ECHO_PY)}]
max_agents = 1

[roles.echo_kit]
command = [{python}, {json.dumps(os.path.join(BENCH, "kit_echo.py"))}]
{env}
max_agents = 1
"""


def main():
    if not os.path.exists(SKEP):
        sys.exit(f"{SKEP} is missing: cargo build --release -p skep")
    rows = []
    heavy_import = import_time()
    with tempfile.TemporaryDirectory(prefix="skep-kits-bench-") as tmp:
        path = os.path.join(tmp, "skep.toml")
        with open(path, "w") as f:
            f.write(config())
        sidecar = Peer([SKEP, "serve", "--config", path])
        call = lambda role, method, params: sidecar.call("swarm/call", {"role": role, "method": method, "params": params})  # noqa: E731
        request = {"text": TEXT}
        # Every role answers the same logic the same way before anything is timed.
        expected = call("kit", "summarize", request)
        assert call("preload", "run", request)["json"] == expected
        assert call("percall", "run", request)["json"] == expected
        results = {}
        for name, role, method, n in [
            ("a process per call", "percall", "run", COLD_N),
            ("preload mode (fork per call)", "preload", "run", WARM_N),
            ("kit agent", "kit", "summarize", WARM_N),
        ]:
            times = timed(_Sidecar(call, role), n, method, request)
            results[role] = times
            rows.append((name, times))
        echo = {"path": "src/lib.rs", "n": 3}
        for name, role in [("hand-written echo agent, through skep", "echo_hand"), ("kit echo agent, through skep", "echo_kit")]:
            times = timed(_Sidecar(call, role), WARM_N, "echo", echo)
            results[role] = times
            rows.append((name, times))
        sidecar.call("shutdown", None)
        sidecar.proc.wait(timeout=60)
    env = dict(os.environ, PYTHONPATH=KIT)
    for name, argv in [
        ("hand-written echo agent, direct pipe", [sys.executable, ECHO_PY]),
        ("kit echo agent, direct pipe", [sys.executable, os.path.join(BENCH, "kit_echo.py")]),
    ]:
        peer = Peer(argv, env=env)
        times = timed(peer, WARM_N, "echo", echo)
        peer.close()
        results[name] = times
        rows.append((name, times))

    print(f"`heavy` import, median of 5 fresh interpreters: {show(heavy_import)}\n")
    print("| per call | p50 | p99 | mean | n |")
    print("| --- | --- | --- | --- | --- |")
    for name, times in rows:
        print(f"| {name} | {show(p(times, 0.5))} | {show(p(times, 0.99))} | {show(statistics.mean(times))} | {len(times)} |")
    med = {k: p(v, 0.5) for k, v in results.items()}
    print()
    print(f"- a process per call / preload, p50: **{med['percall'] / med['preload']:.0f}×** (target ≥ 50×)")
    print(f"- a process per call / kit agent, p50: **{med['percall'] / med['kit']:.0f}×**")
    print(f"- preload / kit agent, p50: {med['preload'] / med['kit']:.1f}×")
    print(f"- kit echo / hand-written echo through skep, p50: **{med['echo_kit'] / med['echo_hand']:.2f}×** (target ≤ 2×)")
    direct = med["kit echo agent, direct pipe"] / med["hand-written echo agent, direct pipe"]
    print(f"- kit echo / hand-written echo on a direct pipe, p50: **{direct:.2f}×**")


class _Sidecar:
    """`timed` calls `peer.call(method, params)`; this routes it to one role of the sidecar."""

    def __init__(self, call, role):
        self._call, self._role = call, role

    def call(self, method, params):
        return self._call(self._role, method, params)


if __name__ == "__main__":
    main()
