#!/usr/bin/env python3
"""Scenario 2's driver: one call at a time to heavy_agent.py, three ways.

    python3 py_driver.py MODE CALLS [SKEP CONFIG]

MODE is `spawn` (a new agent process per call, what the seed workflow did),
`pool` (concurrent.futures.ProcessPoolExecutor with one warm worker) or
`skep` (`skep serve --config CONFIG`, swarm/call to the role `heavy`). Each
call echoes a 100-byte object. Start-up of the pool and the sidecar is not
timed (one untimed call warms them); spawn pays it on every call, which is
the point. Prints {"metrics": {"call": [ns, ...]}} on stdout.
"""
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import heavy_agent  # noqa: E402

PARAMS = {"text": "x" * 89}  # 100 bytes of JSON


class Pipe:
    """Newline JSON-RPC over a child's pipes."""

    def __init__(self, argv):
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.next_id = 0

    def call(self, method, params):
        self.next_id += 1
        msg = {"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params}
        self.proc.stdin.write((json.dumps(msg) + "\n").encode())
        self.proc.stdin.flush()
        reply = json.loads(self.proc.stdout.readline())
        if "result" not in reply:
            raise RuntimeError(reply)
        return reply["result"]

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


def timed(fn, calls):
    samples = []
    for _ in range(calls):
        t = time.perf_counter_ns()
        fn()
        samples.append(time.perf_counter_ns() - t)
    return samples


def spawn_call():
    agent = Pipe([sys.executable, os.path.join(HERE, "heavy_agent.py")])
    assert agent.call("echo", PARAMS) == PARAMS
    agent.close()


def main():
    mode, calls = sys.argv[1], int(sys.argv[2])
    if mode == "spawn":
        samples = timed(spawn_call, calls)
    elif mode == "pool":
        with ProcessPoolExecutor(max_workers=1, initializer=heavy_agent.init) as pool:
            pool.submit(heavy_agent.handle, "echo", PARAMS).result()
            samples = timed(lambda: pool.submit(heavy_agent.handle, "echo", PARAMS).result(), calls)
    elif mode == "skep":
        sidecar = Pipe([sys.argv[3], "serve", "--config", sys.argv[4]])
        call = {"role": "heavy", "method": "echo", "params": PARAMS}
        assert sidecar.call("swarm/call", call) == PARAMS
        samples = timed(lambda: sidecar.call("swarm/call", call), calls)
        sidecar.close()
    else:
        sys.exit("unknown mode %r: spawn, pool or skep" % mode)
    print(json.dumps({"metrics": {"call": samples}}))


if __name__ == "__main__":
    main()
