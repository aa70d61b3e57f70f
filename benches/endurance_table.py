#!/usr/bin/env python3
"""Markdown tables from the outputs of spawn_cycles.py and soak.py.

    python3 benches/endurance_table.py /work/endurance-out/cycles /work/endurance-out/soak

Prints, for docs/benchmarks.md: the cycles' series (start, end, max) and
one row per --cycle-step cycles; the soak's series (start, end, min, max,
and the RSS slope over its second half) and one row per --soak-step seconds.
"""
import argparse
import csv
import json
import os

SERIES = ["fds", "rss_kib", "threads", "zombies", "agent_pgroups", "descendants", "machine_procs", "load1"]


def load(directory, name):
    with open(os.path.join(directory, name + ".csv")) as f:
        rows = [{k: float(v) for k, v in r.items()} for r in csv.DictReader(f)]
    with open(os.path.join(directory, name + "_summary.json")) as f:
        return rows, json.load(f)


def fmt(v):
    return "%d" % v if float(v).is_integer() else "%.2f" % v


def table(header, rows):
    print("| " + " | ".join(header) + " |")
    print("|" + " --- |" * len(header))
    for r in rows:
        print("| " + " | ".join(r) + " |")
    print()


def spread(rows, extra=()):
    out = []
    for k in SERIES + list(extra):
        vals = [r[k] for r in rows]
        out.append([k, fmt(vals[0]), fmt(vals[-1]), fmt(min(vals)), fmt(max(vals))])
    return out


def slope_per_hour(rows, key, t="elapsed_s"):
    """Least-squares slope of `key` over the second half of the run, per hour."""
    half = [r for r in rows if r[t] >= rows[-1][t] / 2]
    n = len(half)
    mx = sum(r[t] for r in half) / n
    my = sum(r[key] for r in half) / n
    sxx = sum((r[t] - mx) ** 2 for r in half)
    sxy = sum((r[t] - mx) * (r[key] - my) for r in half)
    return sxy / sxx * 3600 if sxx else 0.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("cycles_dir")
    ap.add_argument("soak_dir")
    ap.add_argument("--cycle-step", type=int, default=10000)
    ap.add_argument("--soak-step", type=float, default=300)
    args = ap.parse_args()

    rows, s = load(args.cycles_dir, "spawn_cycles")
    print("Spawn/kill cycles: %d cycles in %.0f s (%.0f/s), outcomes %s, faults %s, lost %d, duplicated %d, "
          "wrong %d, exit status %s, processes left %s\n" % (
              s["cycles"], s["seconds"], s["cycles_per_s"], s["outcomes"], s["faults"], s["lost"],
              s["duplicated"], s["wrong_answers"], s["exit_status"], s.get("processes_left", s.get("groups_left"))))
    table(["series", "start", "end", "min", "max"], spread(rows))
    picked = [r for r in rows if r["cycles"] % args.cycle_step < 50 or r is rows[-1]]
    table(["cycles", "s"] + SERIES, [[fmt(r["cycles"]), fmt(r["elapsed_s"])] + [fmt(r[k]) for k in SERIES] for r in picked])

    rows, s = load(args.soak_dir, "soak")
    print("Soak: %.1f min at %.0f calls/s, %d sent, %d answered, outcomes %s, SIGKILLs %d, cache hits %d, "
          "lost %d, duplicated %d, wrong %d, exit status %s, processes left %s\n" % (
              s["minutes"], s["rate"], s["sent"], s["answered"], s["outcomes"], s["sigkills"], s["cache_hits"],
              s["lost"], s["duplicated"], s["wrong_answers"], s["exit_status"], s.get("processes_left", s.get("groups_left"))))
    table(["series", "start", "end", "min", "max"], spread(rows, ["starting", "idle", "busy", "stopping"]))
    print("RSS slope over the second half: %.0f KiB/hour; fds slope: %.2f/hour\n" % (
        slope_per_hour(rows, "rss_kib"), slope_per_hour(rows, "fds")))
    picked, mark = [], 0.0
    for r in rows:
        if r["elapsed_s"] >= mark or r is rows[-1]:
            picked.append(r)
            mark = (r["elapsed_s"] // args.soak_step + 1) * args.soak_step
    keys = ["fds", "rss_kib", "threads", "zombies", "descendants", "stopping", "machine_procs", "load1"]
    table(["min", "answered"] + keys,
          [["%.0f" % (r["elapsed_s"] / 60), fmt(r["answered"])] + [fmt(r[k]) for k in keys] for r in picked])


if __name__ == "__main__":
    main()
