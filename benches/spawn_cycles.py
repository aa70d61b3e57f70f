#!/usr/bin/env python3
"""Agent spawn/kill cycles through a real `skep serve`, and what the
orchestrator holds before, during and after them.

    cargo build --release -p skep -p skep-swarm --bin skep --bin skep-test-agent
    python3 benches/spawn_cycles.py --cycles 100000 --max-seconds 3600 --out /work/endurance-out

How agents end (every cycle is one agent process started, used once, gone):
  - role `cycle` (4 agents, max_calls = 1): each call's agent is recycled
    after its one call (stdin closed, it exits 0). One call in 100 is a
    `sleep 300 ms` with timeoutMs 50 instead, so that agent is replaced
    after a timeout (it exits on EOF once its sleep ends);
  - role `crashy` (max_calls = 1): every 20 s, alternately, a `crash` call
    (the agent exits 3 mid-call) or a SIGKILL of one of its agents from
    outside. No faster: more than 5 crashes in 60 s fail a role by design.

Sampled from /proc after warm-up, every --every cycles, and after the load
stops and the pools settle: the orchestrator's open fds, RSS, threads, its
zombie children, the process groups and processes below it, and the
machine's process count. Then `shutdown`, and a check that no process of any
agent group seen is left. The driver leaves nothing running on any exit:
the orchestrator dies with it (PR_SET_PDEATHSIG) and atexit kills it and
every agent group seen.

Writes OUT/spawn_cycles.csv and OUT/spawn_cycles_summary.json; prints the
summary. Exit status 1 if a count did not come back or an answer was lost,
duplicated or wrong.
"""
import argparse
import collections
import csv
import json
import os
import signal
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ left in the source tree
import endurance as e  # noqa: E402  (after the line above on purpose)

CONFIG = """\
[roles.cycle]
command = ["{agent}"]
env_passthrough = []
min_warm = 4
max_agents = 4
max_calls = 1
timeout = "10s"
queue_timeout = "60s"

[roles.crashy]
command = ["{agent}"]
env_passthrough = []
min_warm = 1
max_agents = 1
max_calls = 1
timeout = "10s"
queue_timeout = "60s"
"""
WARM = {"cycle": 4, "crashy": 1}
WINDOW = 8            # calls kept in flight on `cycle`: two per agent
TIMEOUT_EVERY = 100   # one `cycle` call in this many times out
FAULT_EVERY_S = 20.0  # crash or SIGKILL on `crashy`, alternately
PID_MEMORY = 1000     # a pid answering twice within this many calls is an error


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cycles", type=int, default=100_000)
    ap.add_argument("--max-seconds", type=float, default=3600.0, help="stop sending after this long")
    ap.add_argument("--every", type=int, default=2000, help="sample every N cycles")
    ap.add_argument("--out", default="/work/endurance-out")
    args = ap.parse_args()
    e.require_binaries()
    os.makedirs(args.out, exist_ok=True)
    cfg = e.write_config(os.path.join(args.out, "spawn_cycles.toml"), CONFIG.format(agent=e.TEST_AGENT))
    machine_before = len(e.read_procs())
    orch = e.Orchestrator(cfg, os.path.join(args.out, "spawn_cycles.stderr"))
    if not e.wait_settled(orch, WARM, timeout=60):
        sys.exit("the pools never warmed up")
    before = e.sample(orch)

    rows, outcomes = [], collections.Counter()
    wrong, recent_pids = [], collections.deque(maxlen=PID_MEMORY)
    started = time.monotonic()
    sent = cycles = in_flight = 0
    faults, next_fault, fault_kind = collections.Counter(), started + FAULT_EVERY_S, "crash"

    def record(extra):
        row = {"cycles": cycles, "elapsed_s": round(time.monotonic() - started, 1)}
        row.update(extra)
        rows.append(row)

    record(before)
    next_sample = args.every
    while True:
        now = time.monotonic() - started
        sending = now < args.max_seconds and sent < args.cycles
        if not sending and (orch.in_flight() == 0 or now > args.max_seconds + 120):
            break  # everything answered, or the answers still missing count as lost
        while sending and in_flight < WINDOW:
            sent += 1
            if sent % TIMEOUT_EVERY == 0:
                orch.send("swarm/call", {"role": "cycle", "method": "sleep", "params": {"ms": 300}, "timeoutMs": 50},
                          tag="timeout")
            else:
                orch.send("swarm/call", {"role": "cycle", "method": "pid"}, tag="pid")
            in_flight += 1
            sending = sent < args.cycles
        if time.monotonic() >= next_fault and sending:
            next_fault += FAULT_EVERY_S
            if fault_kind == "crash":
                orch.send("swarm/call", {"role": "crashy", "method": "crash"}, tag="crash")
            elif kill_one_agent(orch, "crashy"):
                faults["sigkill"] += 1
                cycles += 1
            fault_kind = "sigkill" if fault_kind == "crash" else "crash"
        for _, tag, reply, _ in orch.take_answers(wait=0.2):
            if tag == "sync":
                continue
            cycles += 1
            if tag != "crash":
                in_flight -= 1
            outcome = check(tag, reply, recent_pids, wrong)
            outcomes[(tag, outcome)] += 1
            if tag == "crash":
                faults["crash"] += 1
        if cycles >= next_sample:
            next_sample += args.every
            record(e.sample(orch))
            print("%7d cycles  %6.1f s  %s" % (cycles, rows[-1]["elapsed_s"], rows[-1]), file=sys.stderr, flush=True)
    elapsed = time.monotonic() - started
    lost_before_drain = orch.in_flight()

    settled = e.wait_settled(orch, WARM, timeout=120)
    after = e.sample(orch)
    record(after)
    stats = orch.request("swarm/stats")
    status = orch.shutdown()
    left, orphans = e.check_nothing_left(orch)
    machine_after = len(e.read_procs())

    with open(os.path.join(args.out, "spawn_cycles.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["cycles", "elapsed_s"] + e.SAMPLE_FIELDS)
        w.writeheader()
        w.writerows(rows)
    series = {k: {"before": before[k], "after": after[k], "max": max(r[k] for r in rows)} for k in e.SAMPLE_FIELDS}
    back = {k: before[k] == after[k] for k in ("fds", "zombies", "agent_pgroups", "descendants", "threads")}
    summary = {
        "commit": os.popen("git -C %s rev-parse --short HEAD" % e.ROOT).read().strip(),
        "cycles": cycles, "seconds": round(elapsed, 1), "cycles_per_s": round(cycles / elapsed, 1),
        "outcomes": {"%s:%s" % k: v for k, v in sorted(outcomes.items())},
        "faults": dict(faults),
        "lost": lost_before_drain, "duplicated": orch.duplicates, "unknown_ids": orch.unknown_ids,
        "wrong_answers": len(wrong), "wrong_examples": wrong[:5],
        "settled": settled, "series": series, "back_to_start": back,
        "rss_growth_kib": after["rss_kib"] - before["rss_kib"],
        "machine_procs": {"before": machine_before, "after": machine_after},
        "exit_status": status, "processes_left": left, "orphans_left": orphans,
        "stats": stats,
    }
    with open(os.path.join(args.out, "spawn_cycles_summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    print(json.dumps({k: v for k, v in summary.items() if k != "stats"}, indent=1))
    ok = (settled and all(back.values()) and lost_before_drain == 0 and orch.duplicates == 0
          and not wrong and status == 0 and not left and not orphans)
    sys.exit(0 if ok else 1)


def check(tag, reply, recent_pids, wrong):
    """The outcome of one answer; answers that contradict their call go to `wrong`."""
    if "error" in reply:
        code = reply["error"].get("code")
        expected = {"timeout": -32001, "crash": -32003}.get(tag)
        if code != expected:
            wrong.append({"tag": tag, "reply": reply})
        return str(code)
    if tag != "pid" or not isinstance(reply.get("result"), int):
        wrong.append({"tag": tag, "reply": reply})
        return "ok"
    pid = reply["result"]
    if pid in recent_pids:
        # With max_calls = 1 every answer must come from a fresh process.
        wrong.append({"tag": tag, "reply": reply, "why": "pid answered twice"})
    recent_pids.append(pid)
    return "ok"


def kill_one_agent(orch, role):
    """SIGKILLs one agent of `role` from outside; True if one was killed."""
    for agent in orch.request("swarm/agents"):
        pid = agent.get("pid") or 0
        if agent["role"] != role or pid <= 0:
            continue
        procs = e.read_procs()
        if procs.get(pid, ("", 0, 0))[1] != orch.pid:
            continue  # gone already, or the pid is no longer our agent's
        os.kill(pid, signal.SIGKILL)
        return True
    return False


if __name__ == "__main__":
    main()
