"""Memory recycling under load: a role whose agents keep 20 MiB more on
every call, bounded by max_rss = "100MiB", served a stream of calls with a
few in flight. Reports calls lost or failed (both must be 0), agents
recycled for memory, and the orchestrator's own fds and RSS before and
after (flat: recycling must not leak in skep).

    python3 benches/recycle_soak.py --calls 2000 [--debug]

Standard library only; uses the helpers of endurance.py. Not run in CI.
"""
import argparse
import os
import tempfile
import time

import endurance


def fds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def rss_mib(pid):
    with open("/proc/%d/statm" % pid) as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--in-flight", type=int, default=4)
    parser.add_argument("--debug", action="store_true", help="use target/debug binaries")
    args = parser.parse_args()
    if args.debug:
        for name in ("SKEP", "TEST_AGENT"):
            setattr(endurance, name, getattr(endurance, name).replace("/release/", "/debug/"))
    endurance.require_binaries()
    work = tempfile.mkdtemp(prefix="skep-recycle-")
    config = os.path.join(work, "skep.toml")
    with open(config, "w") as f:
        f.write('[roles.leaky]\ncommand = ["%s", "--grow-mb", "20"]\nmin_warm = 2\nmax_agents = 4\n'
                'concurrency = 1\ntimeout = "10s"\nmax_rss = "100MiB"\n' % endurance.TEST_AGENT)
    orch = endurance.Orchestrator(config, os.path.join(work, "stderr.log"))
    deadline = time.monotonic() + 30
    while sum(a["state"] == "idle" for a in orch.request("swarm/agents")) < 2:
        if time.monotonic() > deadline:
            raise SystemExit("the pool never got warm")
        time.sleep(0.05)
    fds_before, rss_before = fds(orch.pid), rss_mib(orch.pid)
    agents_before = len(orch.request("swarm/agents"))

    started = time.monotonic()
    sent = ok = failed = 0
    while ok + failed < args.calls:
        while sent < args.calls and orch.in_flight() < args.in_flight:
            orch.send("swarm/call", {"role": "leaky", "method": "pid"})
            sent += 1
        for _, _, reply, _ in orch.take_answers(wait=1.0):
            if "error" in reply:
                failed += 1
            else:
                ok += 1
    took = time.monotonic() - started
    # Recycles still under way hold pipes: compare once the pool has settled.
    deadline = time.monotonic() + 30
    while any(a["state"] not in ("idle", "busy") for a in orch.request("swarm/agents")):
        if time.monotonic() > deadline:
            raise SystemExit("the pool never settled")
        time.sleep(0.05)
    agents_after = len(orch.request("swarm/agents"))
    stats = orch.request("swarm/stats")["roles"][0]
    fds_after, rss_after = fds(orch.pid), rss_mib(orch.pid)
    status = orch.shutdown()
    lost = args.calls - ok - failed
    print("| calls | ok | failed | lost | duplicated | recycled (memory) | agents before → after "
          "| skep fds before → after | skep RSS MiB before → after | seconds | exit |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    print("| %d | %d | %d | %d | %d | %d | %d → %d | %d → %d | %.1f → %.1f | %.1f | %s |" % (
        args.calls, ok, failed, lost, orch.duplicates, stats["recycled"]["memory"], agents_before,
        agents_after, fds_before, fds_after, rss_before, rss_after, took, status))


if __name__ == "__main__":
    main()
