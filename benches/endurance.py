"""Shared parts of the endurance scripts (spawn_cycles.py, soak.py): one
`skep serve` held on pipes, and samples of what it holds taken from /proc.

Standard library only. Not a test and not run in CI: see docs/benchmarks.md.
"""
import atexit
import ctypes
import json
import os
import signal
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SKEP = os.path.join(ROOT, "target", "release", "skep")
TEST_AGENT = os.path.join(ROOT, "target", "release", "skep-test-agent")
PR_SET_PDEATHSIG = 1


def require_binaries():
    for path, build in ((SKEP, "cargo build --release -p skep"),
                        (TEST_AGENT, "cargo build --release -p skep-swarm --bin skep-test-agent")):
        if not os.access(path, os.X_OK):
            sys.exit("missing %s; build it first: %s" % (path, build))


def _die_with_parent():
    # Runs in the child between fork and exec: if this driver is SIGKILLed,
    # the kernel kills the orchestrator too, so nothing outlives the driver
    # even when atexit never runs.
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _exit_on_signal(signum, _frame):
    raise SystemExit(128 + signum)


class Orchestrator:
    """`skep serve --config CFG` on pipes, with answers matched by id.

    Every answer is counted per id, so a lost answer (never arrives) and a
    duplicated one (arrives twice) are both visible to the caller.
    """

    def __init__(self, config_path, stderr_path):
        self.stderr = open(stderr_path, "ab")
        env = dict(os.environ)
        env.setdefault("SKEP_LOG", "warn")
        self.proc = subprocess.Popen(
            [SKEP, "serve", "--config", config_path],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr,
            preexec_fn=_die_with_parent, env=env,
        )
        self.pid = self.proc.pid
        self.lock = threading.Condition()
        self.next_id = 0
        self.pending = {}      # id -> caller's tag, while unanswered
        self.answers = {}      # id -> (tag, reply, answered_at) for answers not yet taken
        self.answer_count = {}  # id -> how many answers arrived (for duplicates)
        self.unknown_ids = 0
        self.duplicates = 0
        self.seen = set()  # (pid, start time) of every process seen below the orchestrator
        self.write_lock = threading.Lock()
        atexit.register(self.kill)
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, _exit_on_signal)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            msg = json.loads(line)
            if "id" not in msg:
                continue  # a notification
            with self.lock:
                rid = msg["id"]
                count = self.answer_count.get(rid, 0) + 1
                self.answer_count[rid] = count
                if count > 1:
                    self.duplicates += 1
                elif rid not in self.pending:
                    self.unknown_ids += 1
                else:
                    self.answers[rid] = (self.pending.pop(rid), msg, time.monotonic())
                self.lock.notify_all()

    def _write(self, obj):
        data = (json.dumps(obj, separators=(",", ":")) + "\n").encode()
        with self.write_lock:
            self.proc.stdin.write(data)
            self.proc.stdin.flush()

    def send(self, method, params, tag=None):
        """Sends a request; its answer later shows up in `take_answers`."""
        with self.lock:
            self.next_id += 1
            rid = self.next_id
            self.pending[rid] = tag
        self._write({"jsonrpc": "2.0", "id": rid, "method": method, "params": params})
        return rid

    def cancel(self, rid):
        self._write({"jsonrpc": "2.0", "method": "$/cancelRequest", "params": {"id": rid}})

    def take_answers(self, wait=0.0):
        """Answers that arrived since the last call: [(id, tag, reply, at)]."""
        with self.lock:
            if not self.answers and wait > 0:
                self.lock.wait(wait)
            out = [(rid, tag, reply, at) for rid, (tag, reply, at) in self.answers.items()]
            self.answers.clear()
            return out

    def in_flight(self):
        with self.lock:
            return len(self.pending)

    def request(self, method, params=None, timeout=30.0):
        """A call that waits for its own answer (for stats and agent lists)."""
        rid = self.send(method, params if params is not None else {}, tag="sync")
        deadline = time.monotonic() + timeout
        with self.lock:
            while rid not in self.answers:
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    raise RuntimeError("no answer to %s within %.0f s" % (method, timeout))
                self.lock.wait(left)
            _, reply, _ = self.answers.pop(rid)
        if "error" in reply:
            raise RuntimeError("%s failed: %s" % (method, reply["error"]))
        return reply["result"]

    def shutdown(self, timeout=30.0):
        """Asks for an orderly stop and waits for the exit status."""
        try:
            self.request("shutdown", timeout=timeout)
        except (RuntimeError, OSError):
            pass
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self.kill()

    def kill(self):
        """Leaves nothing running: the orchestrator, then any agent of ours left.

        Only processes identified as ours are signalled, one by one by pid
        (see `leftovers`); never a process group by number, as 100,000
        spawns wrap the pid space and a group number seen early may belong
        to someone else's job by the end.
        """
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for pid, start in leftovers(self):
            if _start_time(pid) == start:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


def read_procs():
    """Every process on the machine: {pid: (state, ppid, pgid, start)}.

    `start` (clock ticks after boot) tells a process from a later one that
    got the same pid once the pid space wrapped.
    """
    procs = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name, "rb") as f:
                stat = f.read()
        except OSError:
            continue  # exited while we looked
        # comm may hold spaces and parentheses: split after the last ')'.
        fields = stat[stat.rindex(b")") + 2:].split()
        procs[int(name)] = (fields[0].decode(), int(fields[1]), int(fields[2]), int(fields[19]))
    return procs


def _start_time(pid):
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            stat = f.read()
    except OSError:
        return None
    return int(stat[stat.rindex(b")") + 2:].split()[19])


def _exe(pid):
    try:
        return os.readlink("/proc/%d/exe" % pid)
    except OSError:
        return None


def descendants(procs, root):
    children = {}
    for pid, (_, ppid, _, _) in procs.items():
        children.setdefault(ppid, []).append(pid)
    out, todo = [], list(children.get(root, []))
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def leftovers(orch):
    """Processes of ours still alive that should not be: every process seen
    below the orchestrator (same pid and start time) other than the
    orchestrator's own live agents, and any process running our test agent
    binary whose parent is not a skep of ours (an orphan whose start the
    samples missed). Run once the orchestrator is gone, every one is a leak.
    """
    procs = read_procs()
    agent_exe, skep_exe = os.path.realpath(TEST_AGENT), os.path.realpath(SKEP)
    live_below = set(descendants(procs, orch.pid)) if orch.proc.poll() is None else set()
    out = set()
    for pid, (state, ppid, _, start) in procs.items():
        if pid in live_below or pid == orch.pid or state == "Z":
            continue  # a zombie is dead already; only its reaping is pending
        if (pid, start) in orch.seen:
            out.add((pid, start))
        elif _exe(pid) == agent_exe and _exe(ppid) != skep_exe:
            out.add((pid, start))
    return sorted(out)


def status_field(pid, key):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


SAMPLE_FIELDS = ["fds", "rss_kib", "threads", "zombies", "agent_pgroups", "descendants",
                 "machine_procs", "load1"]


def sample(orch):
    """What the orchestrator holds right now, from /proc.

    zombies: its children in state Z; agent_pgroups: distinct process groups
    among its descendants other than its own (the group watcher, a fork of
    skep itself, is not counted among the descendants); machine_procs: every process
    on the machine (others' builds move it too: read it with that in mind).
    """
    procs = read_procs()
    own_pgid = procs[orch.pid][2]
    # skep's group watcher is a fork of skep itself (no exec): not an agent.
    skep_exe = os.path.realpath(SKEP)
    below = [p for p in descendants(procs, orch.pid) if _exe(p) != skep_exe]
    pgroups = {procs[p][2] for p in below if procs[p][2] != own_pgid}
    orch.seen.update((p, procs[p][3]) for p in below)
    with open("/proc/loadavg") as f:
        load1 = float(f.read().split()[0])
    return {
        "fds": len(os.listdir("/proc/%d/fd" % orch.pid)),
        "rss_kib": status_field(orch.pid, "VmRSS"),
        "threads": status_field(orch.pid, "Threads"),
        "zombies": sum(1 for p in below if procs[p][1] == orch.pid and procs[p][0] == "Z"),
        "agent_pgroups": len(pgroups),
        "descendants": len(below),
        "machine_procs": len(procs),
        "load1": load1,
    }


def agent_counts(orch):
    """{role: {"starting","idle","busy","stopping"}} from swarm/stats."""
    return {r["role"]: r["agents"] for r in orch.request("swarm/stats")["roles"]}


def wait_settled(orch, warm, timeout=60.0):
    """Polls until every role holds exactly its warm agents, all idle, and no
    zombie is left; returns False if that does not happen by the deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        counts = agent_counts(orch)
        settled = all(
            c["starting"] == 0 and c["busy"] == 0 and c["stopping"] == 0 and c["idle"] == warm[role]
            for role, c in counts.items()
        )
        if settled and orch.in_flight() == 0:
            s = sample(orch)
            if s["zombies"] == 0 and s["descendants"] == sum(warm.values()):
                return True
        time.sleep(0.2)
    return False


def check_nothing_left(orch):
    """After the orchestrator exits: (our processes still alive, its children still alive).

    Polls for a few seconds: a process killed a moment ago may still be
    running its exit when we first look.
    """
    deadline = time.monotonic() + 5
    while leftovers(orch) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = [pid for pid, _ in leftovers(orch)]
    orphans = [pid for pid, (_, ppid, _, _) in read_procs().items() if ppid == orch.pid]
    return left, orphans


def write_config(path, text):
    with open(path, "w") as f:
        f.write(text)
    return path
