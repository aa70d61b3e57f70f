#!/usr/bin/env python3
"""A soak: one `skep serve` under a steady mixed load, with its RSS and open
fds sampled as a CSV series.

    cargo build --release -p skep -p skep-swarm --bin skep --bin skep-test-agent
    nohup python3 benches/soak.py --minutes 60 --rate 20 --out /work/endurance-out &

The mix, drawn at random per call at --rate calls/s (open loop: a call is
sent on schedule whether or not earlier ones were answered):
  - ok:       `echo` of 0-2 KiB to role `work`; the answer must equal the params
  - sleep:    `sleep` 5-50 ms on `work`
  - error:    `fail` on `work`: the agent's own error, passed through
  - timeout:  `sleep` 1500 ms with timeoutMs 200: -32001, the agent replaced
  - cancel:   `sleep` 1000 ms, `$/cancelRequest` 50-150 ms later: -32800
  - cached:   `echo` of one of 100 params to role `cached` (idempotent echo)
and, on their own clock, a `crash` call on `work` every 40 s and a SIGKILL of
one of `work`'s agents from outside every 40 s (20 s apart): three crashes a
minute at most, as more than five in 60 s fail a role by design. A config
reload is not in the mix: skep cannot reload its config yet.

Every --sample-s seconds: the orchestrator's open fds, RSS, threads, zombie
children, agent process groups, processes below it, the machine's process
count and load average, and swarm/stats' agent counts, to OUT/soak.csv.
At the end: every answer checked (lost, duplicated, wrong = 0?), the pools
settled, `shutdown`, and no process of any agent group left. The driver
leaves nothing running on any exit (see endurance.py).
"""
import argparse
import collections
import csv
import heapq
import json
import os
import random
import signal
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ left in the source tree
import endurance as e  # noqa: E402  (after the line above on purpose)

CONFIG = """\
[roles.work]
command = ["{agent}"]
env_passthrough = []
min_warm = 2
max_agents = 4
max_calls = 1000
timeout = "5s"
queue_timeout = "10s"
idle_timeout = "20s"

[roles.cached]
command = ["{agent}"]
env_passthrough = []
min_warm = 1
max_agents = 1
idempotent = ["echo"]
timeout = "5s"
queue_timeout = "10s"
"""
WARM = {"work": 2, "cached": 1}
MIX = [("ok", 50), ("sleep", 15), ("error", 5), ("timeout", 4), ("cancel", 6), ("cached", 20)]
FAULT_EVERY_S = 40.0
CACHED_KEYS = 100
EXPECTED_ERROR = {"error": -32000, "timeout": -32001, "cancel": -32800, "crash": -32003}
FIELDS = ["elapsed_s", "sent", "answered"] + e.SAMPLE_FIELDS + ["starting", "idle", "busy", "stopping"]


def make_call(kind, rng):
    if kind == "ok":
        return {"role": "work", "method": "echo", "params": {"n": rng.getrandbits(40), "pad": "x" * rng.randrange(2048)}}
    if kind == "sleep":
        return {"role": "work", "method": "sleep", "params": {"ms": rng.randrange(5, 51)}}
    if kind == "error":
        return {"role": "work", "method": "fail", "params": {"message": "asked to fail %d" % rng.getrandbits(20)}}
    if kind == "timeout":
        return {"role": "work", "method": "sleep", "params": {"ms": 1500}, "timeoutMs": 200}
    if kind == "cancel":
        return {"role": "work", "method": "sleep", "params": {"ms": 1000}}
    if kind == "cached":
        return {"role": "cached", "method": "echo", "params": {"key": rng.randrange(CACHED_KEYS)}}
    if kind == "crash":
        return {"role": "work", "method": "crash"}
    raise ValueError(kind)


def check(kind, call, reply):
    """'ok', an error code as text, or None if the answer contradicts the call.

    A -32003 on `work` is accepted for any kind: a SIGKILL from outside takes
    the calls in flight on its agent with it; those are counted apart.
    """
    if "error" in reply:
        code = reply["error"].get("code")
        if code == EXPECTED_ERROR.get(kind) or (code == -32003 and call["role"] == "work"):
            if code == -32000 and reply["error"].get("message") != call["params"]["message"]:
                return None
            return str(code)
        return None
    if kind in EXPECTED_ERROR:
        return None
    want = {"slept": call["params"]["ms"]} if kind == "sleep" else call["params"]
    return "ok" if reply.get("result") == want else None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--rate", type=float, default=20.0, help="calls per second")
    ap.add_argument("--sample-s", type=float, default=10.0)
    ap.add_argument("--seed", type=int, default=19)
    ap.add_argument("--out", default="/work/endurance-out")
    args = ap.parse_args()
    e.require_binaries()
    os.makedirs(args.out, exist_ok=True)
    rng = random.Random(args.seed)
    cfg = e.write_config(os.path.join(args.out, "soak.toml"), CONFIG.format(agent=e.TEST_AGENT))
    orch = e.Orchestrator(cfg, os.path.join(args.out, "soak.stderr"))
    if not e.wait_settled(orch, WARM, timeout=60):
        sys.exit("the pools never warmed up")

    csv_file = open(os.path.join(args.out, "soak.csv"), "w", newline="")
    out = csv.DictWriter(csv_file, fieldnames=FIELDS)
    out.writeheader()
    kinds, weights = zip(*MIX)
    calls = {}  # id -> (kind, call) until answered
    outcomes, wrong = collections.Counter(), []
    cancels = []  # heap of (when, id)
    kills = 0
    sent = answered = 0
    started = time.monotonic()
    end = started + args.minutes * 60
    next_call, next_sample = started, started
    next_crash, next_kill = started + FAULT_EVERY_S / 2, started + FAULT_EVERY_S

    def row():
        s = e.sample(orch)
        agents = collections.Counter()
        for counts in e.agent_counts(orch).values():
            agents.update(counts)
        s.update({"elapsed_s": round(time.monotonic() - started, 1), "sent": sent, "answered": answered})
        s.update({k: agents[k] for k in ("starting", "idle", "busy", "stopping")})
        out.writerow(s)
        csv_file.flush()
        return s

    first = row()
    while True:
        now = time.monotonic()
        if now >= end and (not calls or now > end + 60):
            break  # everything answered, or what is missing counts as lost
        while now < end and next_call <= now:
            kind = rng.choices(kinds, weights)[0]
            call = make_call(kind, rng)
            rid = orch.send("swarm/call", call, tag=kind)
            calls[rid] = (kind, call)
            sent += 1
            if kind == "cancel":
                heapq.heappush(cancels, (now + rng.uniform(0.05, 0.15), rid))
            next_call += 1.0 / args.rate
        while cancels and cancels[0][0] <= now:
            _, rid = heapq.heappop(cancels)
            orch.cancel(rid)
        if now < end and now >= next_crash:
            next_crash += FAULT_EVERY_S
            call = make_call("crash", rng)
            calls[orch.send("swarm/call", call, tag="crash")] = ("crash", call)
            sent += 1
        if now < end and now >= next_kill:
            next_kill += FAULT_EVERY_S
            kills += kill_one_agent(orch, "work")
        for rid, tag, reply, _ in orch.take_answers(wait=0.01):
            if tag == "sync":
                continue
            kind, call = calls.pop(rid)
            answered += 1
            verdict = check(kind, call, reply)
            if verdict is None:
                wrong.append({"kind": kind, "call": call, "reply": reply})
            else:
                outcomes[(kind, verdict)] += 1
        if now >= next_sample:
            next_sample += args.sample_s
            s = row()
            print("%6.0f s  sent %d  answered %d  fds %d  rss %d KiB  agents %d  load %.2f" % (
                s["elapsed_s"], sent, answered, s["fds"], s["rss_kib"], s["descendants"], s["load1"]),
                file=sys.stderr, flush=True)
    elapsed = time.monotonic() - started
    lost = len(calls)

    settled = e.wait_settled(orch, WARM, timeout=90)
    last = row()
    stats = orch.request("swarm/stats")
    cached_agent_calls = sum(a["calls"] for a in orch.request("swarm/agents") if a["role"] == "cached")
    status = orch.shutdown()
    csv_file.close()
    left, orphans = e.check_nothing_left(orch)

    cached_answers = sum(v for (k, _), v in outcomes.items() if k == "cached")
    summary = {
        "commit": os.popen("git -C %s rev-parse --short HEAD" % e.ROOT).read().strip(),
        "minutes": round(elapsed / 60, 1), "rate": args.rate, "sent": sent, "answered": answered,
        "outcomes": {"%s:%s" % k: v for k, v in sorted(outcomes.items())},
        "sigkills": kills,
        "cache_hits": cached_answers - cached_agent_calls,
        "lost": lost, "duplicated": orch.duplicates, "unknown_ids": orch.unknown_ids,
        "wrong_answers": len(wrong), "wrong_examples": wrong[:5],
        "first": first, "last": last, "settled": settled,
        "exit_status": status, "processes_left": left, "orphans_left": orphans,
        "stats": stats,
    }
    with open(os.path.join(args.out, "soak_summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    print(json.dumps({k: v for k, v in summary.items() if k != "stats"}, indent=1))
    ok = lost == 0 and orch.duplicates == 0 and not wrong and status == 0 and not left and not orphans
    sys.exit(0 if ok else 1)


def kill_one_agent(orch, role):
    """SIGKILLs one live agent of `role` from outside; 1 if one was killed."""
    agents = [a for a in orch.request("swarm/agents") if a["role"] == role and (a.get("pid") or 0) > 0]
    random.shuffle(agents)
    procs = e.read_procs()
    for agent in agents:
        if procs.get(agent["pid"], ("", 0, 0))[1] == orch.pid:
            os.kill(agent["pid"], signal.SIGKILL)
            return 1
    return 0


if __name__ == "__main__":
    main()
