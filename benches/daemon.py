#!/usr/bin/env python3
"""The shared daemon, measured side by side in one run (docs/benchmarks.md).

1. `skep call` as a whole process (start the CLI, connect, call, print, exit)
   against a warm daemon, and `python3 agent.py` per call, for an agent whose
   import takes ~300 ms of real CPU work; the two alternate, medians and ratio.
2. 16 concurrent clients x N calls each on their own connection: total
   throughput, and each client's p99 (fairness: the worst p99 over the best).
3. The daemon's RSS when idle, and per open connection.

Usage: python3 benches/daemon.py [--skep target/release/skep] [--calls 1000] [--runs 30]
Standard library only; starts and stops its own daemon in a private directory.
"""

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

AGENT = r'''
import json, sys, time
# Import-time work standing in for heavy imports: ~300 ms of real CPU.
_t = time.process_time()
while time.process_time() - _t < 0.3:
    sum(i * i for i in range(1000))
for line in sys.stdin:
    msg = json.loads(line)
    if "id" in msg:
        sys.stdout.write(json.dumps({"jsonrpc": "2.0", "id": msg["id"], "result": msg.get("params")}) + "\n")
        sys.stdout.flush()
'''


def median_ms(samples):
    return statistics.median(samples) * 1e3


def p99(samples):
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def per_process_call(agent):
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, agent], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    proc.stdin.write(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "echo", "params": {"i": 1}}) + "\n")
    proc.stdin.flush()
    proc.stdout.readline()
    proc.stdin.close()
    proc.wait()
    return time.perf_counter() - start


def skep_call(skep, env, cwd):
    start = time.perf_counter()
    out = subprocess.run([skep, "call", "py", "echo", '{"i":1}'], env=env, cwd=cwd, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if out.returncode != 0:
        sys.exit(f"skep call failed: {out.stderr}")
    return elapsed


class Conn:
    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(path)
        self.file = self.sock.makefile("rb")
        self.next_id = 0

    def call(self, method, params):
        self.next_id += 1
        request = {"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params}
        self.sock.sendall(json.dumps(request).encode() + b"\n")
        answer = json.loads(self.file.readline())
        if "error" in answer:
            raise RuntimeError(answer["error"])
        return answer["result"]


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--skep", default="target/release/skep")
    ap.add_argument("--calls", type=int, default=1000, help="calls per client in the 16-client run")
    ap.add_argument("--runs", type=int, default=30, help="whole-process calls of each kind")
    args = ap.parse_args()
    skep = os.path.abspath(args.skep)

    with tempfile.TemporaryDirectory(prefix="skep-bench-daemon-") as root:
        os.mkdir(os.path.join(root, "run"), 0o700)
        agent = os.path.join(root, "agent.py")
        with open(agent, "w") as f:
            f.write(AGENT)
        with open(os.path.join(root, "skep.toml"), "w") as f:
            f.write(f'[roles.py]\ncommand = ["{sys.executable}", "{agent}"]\n'
                    'min_warm = 4\nmax_agents = 4\nstartup_timeout = "60s"\n')
        env = dict(os.environ, XDG_RUNTIME_DIR=os.path.join(root, "run"), XDG_STATE_HOME=os.path.join(root, "state"))
        env.pop("SKEP_NO_DAEMON", None)
        up = subprocess.run([skep, "up"], env=env, cwd=root, capture_output=True, text=True, check=True)
        sock_path = up.stdout.strip()
        status = json.loads(subprocess.run([skep, "status", "--json"], env=env, cwd=root,
                                           capture_output=True, text=True, check=True).stdout)
        daemon_pid = status["daemon"]["pid"]
        try:
            # 1. A whole `skep call` against a process per call, alternating.
            warm, cold = [], []
            skep_call(skep, env, root)  # the CLI's own first start (page cache)
            for _ in range(args.runs):
                warm.append(skep_call(skep, env, root))
                cold.append(per_process_call(agent))
            print(f"skep call (whole process, warm daemon): median {median_ms(warm):.2f} ms")
            print(f"python3 agent.py per call:             median {median_ms(cold):.1f} ms")
            print(f"ratio: {statistics.median(cold) / statistics.median(warm):.0f}x faster")

            # 3. Idle RSS, and per connection.
            idle = rss_kb(daemon_pid)
            conns = [Conn(sock_path) for _ in range(100)]
            for c in conns:
                c.call("swarm/roles", [])
            with_conns = rss_kb(daemon_pid)
            for c in conns:
                c.sock.close()
            print(f"daemon RSS idle: {idle / 1024:.1f} MiB; per open connection: {(with_conns - idle) / 100:.1f} KiB")

            # 2. 16 clients at once, each its own connection, one call at a time.
            latencies = [[] for _ in range(16)]

            def client(i):
                c = Conn(sock_path)
                for n in range(args.calls):
                    t = time.perf_counter()
                    c.call("swarm/call", {"role": "py", "method": "echo", "params": {"c": i, "n": n}})
                    latencies[i].append(time.perf_counter() - t)

            threads = [threading.Thread(target=client, args=(i,)) for i in range(16)]
            start = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            wall = time.perf_counter() - start
            p99s = [p99(l) * 1e3 for l in latencies]
            print(f"16 clients x {args.calls} calls: {16 * args.calls / wall:,.0f} calls/s; "
                  f"p99 per client {min(p99s):.2f}..{max(p99s):.2f} ms (worst/best {max(p99s) / min(p99s):.2f}x)")
        finally:
            subprocess.run([skep, "down"], env=env, cwd=root, capture_output=True)


if __name__ == "__main__":
    main()
