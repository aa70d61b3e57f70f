#!/usr/bin/env python3
"""CPU that `skep serve` spends per call, 128 calls in flight: user and
system time from /proc/PID/stat around N windows of 128 `swarm/call`s to a
warm `bridge-echo` agent, and its context switches (all its threads',
voluntary and not, from /proc/PID/task/*/status). `--width 1` measures one
call in flight instead. CPU time, unlike wall-clock time, does not move
with the other processes on a shared VM, so builds can be compared by it.
Several builds alternate, round by round.

    cargo build --release -p skep -p skep-benches
    python3 benches/serve_cpu.py [--rounds 4] [--windows 600] [--width 128] SKEP [SKEP...]
"""

import argparse
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ECHO = os.path.join(ROOT, "target", "release", "bridge-echo")
PARAMS = '{"text":"' + "x" * 89 + '"}'


def cpu(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return int(fields[11]), int(fields[12])


def switches(pid):
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            for line in open(f"/proc/{pid}/task/{task}/status"):
                if "ctxt_switches:" in line:
                    total += int(line.split()[-1])
        except FileNotFoundError:
            pass
    return total


def measure(skep, config, windows, width=128):
    p = subprocess.Popen([skep, "serve", "--config", config], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        batch = b"".join(
            ('{"jsonrpc":"2.0","id":%d,"method":"swarm/call","params":{"role":"echo","method":"echo","params":%s}}\n'
             % (i, PARAMS)).encode()
            for i in range(width))

        def window():
            p.stdin.write(batch)
            p.stdin.flush()
            for _ in range(width):
                line = p.stdout.readline()
                if b'"result"' not in line:
                    sys.exit(f"unexpected answer: {line!r}")

        for _ in range(20):
            window()
        before, switched = cpu(p.pid), switches(p.pid)
        for _ in range(windows):
            window()
        after, switched = cpu(p.pid), switches(p.pid) - switched
    finally:
        p.stdin.close()
        p.wait(timeout=30)
    calls, tick = windows * width, os.sysconf("SC_CLK_TCK")
    user, system = ((a - b) / tick / calls * 1e6 for a, b in zip(after, before))
    return user, system, switched / calls


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--windows", type=int, default=600)
    parser.add_argument("--width", type=int, default=128, help="calls in flight")
    parser.add_argument("skep", nargs="+")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        config = os.path.join(scratch, "echo.toml")
        with open(config, "w") as f:
            f.write(f'[roles.echo]\ncommand = ["{ECHO}"]\nmin_warm = 1\nmax_agents = 1\nconcurrency = 128\n')
        results = {skep: [] for skep in args.skep}
        for _ in range(args.rounds):
            for skep in args.skep:
                results[skep].append(measure(skep, config, args.windows, args.width))
    for skep, runs in results.items():
        users = sorted(u for u, _, _ in runs)
        switched = sorted(c for _, _, c in runs)
        print(f"{skep}: user µs/call {', '.join(f'{u:.1f}' for u in users)} (median {users[len(users) // 2]:.1f}); "
              f"system {', '.join(f'{s:.1f}' for _, s, _ in runs)}; "
              f"context switches/call {', '.join(f'{c:.2f}' for c in switched)} "
              f"(median {switched[len(switched) // 2]:.2f})")


if __name__ == "__main__":
    main()
