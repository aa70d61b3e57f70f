#!/usr/bin/env python3
"""CPU that `skep serve` spends per call, 128 calls in flight: user and
system time from /proc/PID/stat around N windows of 128 `swarm/call`s to a
warm `bridge-echo` agent. CPU time, unlike wall-clock time, does not move
with the other processes on a shared VM, so builds can be compared by it.
Several builds alternate, round by round.

    cargo build --release -p skep -p skep-benches
    python3 benches/serve_cpu.py [--rounds 4] [--windows 600] SKEP [SKEP...]
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
        before = cpu(p.pid)
        for _ in range(windows):
            window()
        after = cpu(p.pid)
    finally:
        p.stdin.close()
        p.wait(timeout=30)
    calls, tick = windows * width, os.sysconf("SC_CLK_TCK")
    return tuple((a - b) / tick / calls * 1e6 for a, b in zip(after, before))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--windows", type=int, default=600)
    parser.add_argument("skep", nargs="+")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        config = os.path.join(scratch, "echo.toml")
        with open(config, "w") as f:
            f.write(f'[roles.echo]\ncommand = ["{ECHO}"]\nmin_warm = 1\nmax_agents = 1\nconcurrency = 128\n')
        results = {skep: [] for skep in args.skep}
        for _ in range(args.rounds):
            for skep in args.skep:
                results[skep].append(measure(skep, config, args.windows))
    for skep, runs in results.items():
        users = sorted(u for u, _ in runs)
        print(f"{skep}: user µs/call {', '.join(f'{u:.1f}' for u in users)} (median {users[len(users) // 2]:.1f}); "
              f"system {', '.join(f'{s:.1f}' for _, s in runs)}")


if __name__ == "__main__":
    main()
