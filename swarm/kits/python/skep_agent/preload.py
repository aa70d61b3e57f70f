"""The warm parent of a skep `protocol = "preload"` role (Linux only).

skep starts this file (embedded in skep, or as ``python -m skep_agent.preload``)
through its process runner. It imports the role's ``preload`` modules once,
answers ``initialize`` when they are loaded, and then serves every call by
forking: the child runs the role's script unchanged as ``__main__``, with
``sys.argv`` from the call's ``args``, stdin from the call's ``stdin`` (or the
params as JSON) and its own stdout and stderr captured. The answer has the
shape of a command role's: ``{exitCode, status, stdout, stderr}`` plus ``json``
when stdout parses.

Each call's processes form a process group of their own, led by the
script's process: a timeout or a cancellation kills that group, and so does
the end of the script (nothing it started lingers). The group is out of
reach of skep's clean-up of the agent's own group, so one keeper per warm
parent, forked at start in a group of its own, holds the groups of the calls
in flight (each child registers its own before running anything, the parent
unregisters it before reaping it) and kills them when the warm parent dies,
however it dies; then it exits.

Standard library only, and self-contained (skep runs it with ``python -c``),
so it imports nothing from the rest of the kit. Single-threaded on purpose:
forking a process that runs other threads can leave the child holding locks
nobody will release.
"""
import argparse
import atexit
import builtins
import ctypes
import gc
import importlib
import json
import os
import select
import signal
import sys
import threading
import time
import traceback
import types

MAX_STDOUT = 16 * 1024 * 1024  # as command roles: the rest is dropped, stdoutTruncated says so
MAX_STDERR = 64 * 1024  # the tail is kept
PR_SET_PDEATHSIG = 1
# Looked up once here, not in every forked child.
_PRCTL = ctypes.CDLL(None, use_errno=True).prctl
_CANCEL_METHODS = ("$/cancelRequest", "notifications/cancelled")


def log(message):
    sys.stderr.write(f"skep-preload: {message}\n")
    sys.stderr.flush()


class Run:
    """One call: its keeper (the group's leader), the pipes the script writes to, and what it wrote."""

    def __init__(self, id, pid, pidfd, out, err, deadline):
        self.id = id
        self.pid = pid
        self.pidfd = pidfd
        self.out, self.err = out, err
        self.open = {out, err}  # the pipes not at EOF yet
        self.stdout = bytearray()
        self.stderr = bytearray()
        self.truncated = False
        self.deadline = deadline
        self.cancelled = False
        self.timed_out = False

    def kill(self):
        # The script's process leads the call's group; it is unreaped until
        # `finish`, so the group id cannot have been recycled.
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


class Preloader:
    """The serving loop: JSON-RPC on a private copy of stdout, newline-delimited as skep speaks to agents."""

    def __init__(self, wire, script, timeout, keeper):
        self.wire = wire
        self.keeper = keeper  # the write end of the keeper's registration pipe
        self.script = script
        self.timeout = timeout
        self.runs = {}  # pidfd -> Run
        self.by_id = {}  # json id -> Run
        self.inbuf = bytearray()
        self.eof = False

    def serve(self):
        signal.signal(signal.SIGTERM, self._terminate)
        while not (self.eof and not self.runs):
            readers = [] if self.eof else [0]
            for run in self.runs.values():
                readers.append(run.pidfd)
                readers.extend(run.open)
            now = time.monotonic()
            wait = min((r.deadline - now for r in self.runs.values()), default=None)
            ready, _, _ = select.select(readers, [], [], None if wait is None else max(wait, 0))
            # Output first, then exits, then new calls: a call finished in this
            # round closes its pipes, and only a new call could reuse their numbers.
            for fd in sorted(ready, key=lambda fd: (fd == 0, fd in self.runs)):
                if fd == 0:
                    self._read_stdin()
                elif fd in self.runs:
                    self._finish(self.runs[fd])
                else:
                    self._read_pipe(fd)
            now = time.monotonic()
            for run in list(self.runs.values()):
                if not run.timed_out and now >= run.deadline:
                    run.timed_out = True
                    run.kill()

    def _terminate(self, signum, frame):
        # skep's stop ladder reached SIGTERM: the calls' children are in
        # groups of their own, so take them down before leaving.
        for run in self.runs.values():
            run.kill()
        os._exit(128 + signum)

    def _read_stdin(self):
        chunk = os.read(0, 65536)
        if not chunk:
            self.eof = True  # skep is stopping us: finish the calls in flight, then exit
            return
        self.inbuf += chunk
        while True:
            nl = self.inbuf.find(b"\n")
            if nl < 0:
                return
            line = bytes(self.inbuf[:nl])
            del self.inbuf[: nl + 1]
            if line.strip():
                self._message(line)

    def _message(self, line):
        try:
            msg = json.loads(line.decode("utf-8"))
        except ValueError:
            return self._send_error(None, -32700, "parse error")
        if not isinstance(msg, dict) or not isinstance(msg.get("method"), str):
            if isinstance(msg, dict) and ("result" in msg or "error" in msg):
                return None
            return self._send_error(msg.get("id") if isinstance(msg, dict) else None, -32600, "invalid request")
        method, params = msg["method"], msg.get("params")
        if "id" not in msg:
            if method in _CANCEL_METHODS and isinstance(params, dict):
                run = self.by_id.get(json.dumps(params.get("id", params.get("requestId"))))
                if run is not None:
                    run.cancelled = True
                    run.kill()
            return None
        id = msg["id"]
        if method == "initialize":
            return self._send({"jsonrpc": "2.0", "id": id, "result": {"name": "skep-preload", "script": self.script}})
        if isinstance(params, dict):
            args = params.get("args", [])
            if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
                return self._send_error(id, -32602, "invalid params: args must be an array of strings")
            stdin = params["stdin"] if isinstance(params.get("stdin"), str) else json.dumps(params)
        else:
            args, stdin = [], json.dumps(params)
        self._fork(id, args, stdin.encode("utf-8"))
        return None

    def _fork(self, id, args, stdin):
        # stdin is a memory file, not a pipe: a script that never reads it
        # cannot block the parent, whatever its size.
        stdin_fd = os.memfd_create("skep-stdin")
        os.write(stdin_fd, stdin)
        os.lseek(stdin_fd, 0, os.SEEK_SET)
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:
            _child(parent, self.keeper, self.script, args, stdin_fd, out_w, err_w)
        for fd in (stdin_fd, out_w, err_w):
            os.close(fd)
        try:
            os.setpgid(pid, pid)  # also done by the child: whichever runs first wins the race
        except OSError:
            pass
        deadline = time.monotonic() + self.timeout
        run = Run(id, pid, os.pidfd_open(pid), out_r, err_r, deadline)
        self.runs[run.pidfd] = run
        self.by_id[json.dumps(id)] = run

    def _read_pipe(self, fd):
        run = next((r for r in self.runs.values() if fd in r.open), None)
        if run is None:
            return  # its call finished earlier in this round
        chunk = os.read(fd, 65536)
        if not chunk:
            run.open.discard(fd)
            os.close(fd)
            return
        self._keep(run, fd, chunk)

    @staticmethod
    def _keep(run, fd, chunk):
        if fd == run.out:
            room = MAX_STDOUT - len(run.stdout)
            run.truncated |= len(chunk) > room
            run.stdout += chunk[: max(room, 0)]
        else:
            run.stderr += chunk
            if len(run.stderr) > 2 * MAX_STDERR:
                del run.stderr[:-MAX_STDERR]

    def _finish(self, run):
        # The script has exited but is not reaped yet: anything left in its
        # group is killed now, while the group id is still its own, and the
        # keeper forgets the group before the reap frees the id.
        run.kill()
        os.write(self.keeper, b"-%d\n" % run.pid)
        _, status = os.waitpid(run.pid, 0)
        os.close(run.pidfd)
        del self.runs[run.pidfd]
        del self.by_id[json.dumps(run.id)]
        for fd in run.open:
            # The group is dead, so the pipes reach EOF at once (unless a
            # process escaped into another group: then stop after a moment).
            deadline = time.monotonic() + 0.2
            while time.monotonic() < deadline and select.select([fd], [], [], 0.05)[0]:
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                self._keep(run, fd, chunk)
            os.close(fd)
        if run.cancelled:
            return self._send_error(run.id, -32800, "request cancelled")
        code = os.waitstatus_to_exitcode(status)
        status_text = f"exit code {code}" if code >= 0 else f"killed by {signal.Signals(-code).name}"
        if run.timed_out:
            status_text += f" (at its timeout, {self.timeout:g}s)"
        stdout = run.stdout.decode("utf-8", "replace")
        result = {"exitCode": code if code >= 0 else None, "status": status_text, "stdout": stdout}
        if run.truncated:
            result["stdoutTruncated"] = True
        result["stderr"] = bytes(run.stderr[-MAX_STDERR:]).decode("utf-8", "replace")
        try:
            result["json"] = json.loads(stdout)
        except ValueError:
            pass
        self._send({"jsonrpc": "2.0", "id": run.id, "result": result})

    def _send_error(self, id, code, message):
        self._send({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})

    def _send(self, message):
        data = json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode("utf-8") + b"\n"
        view = memoryview(data)
        while view:
            view = view[os.write(self.wire, view) :]


def _close_all_but(keep):
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass  # the descriptor of the listing itself


def start_keeper():
    """Forks the keeper; returns the write end of its registration pipe."""
    parent = os.getpid()
    read_end, write_end = os.pipe()
    if os.fork() == 0:
        try:
            _keep_groups(parent, read_end)
        finally:
            os._exit(0)
    os.close(read_end)
    return write_end


def _keep_groups(parent, registrations):
    """The keeper: holds the calls' groups, kills them when the parent dies."""
    os.setpgid(0, 0)  # out of the agent's group, so the stop ladder's SIGKILL leaves it to clean up
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    _close_all_but({2, registrations})
    try:
        parent_fd = os.pidfd_open(parent)
    except ProcessLookupError:
        parent_fd = None
    groups, pending = set(), b""
    while True:
        ready = [] if parent_fd is None else select.select([registrations, parent_fd], [], [])[0]
        if parent_fd is None or parent_fd in ready:
            # The parent is gone: take in what it and the children wrote, then kill.
            os.set_blocking(registrations, False)
            try:
                pending += _drain(registrations)
            except BlockingIOError:
                pass
            groups = _apply(groups, pending)
            for pgid in groups:
                try:
                    os.killpg(pgid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            return
        chunk = os.read(registrations, 65536)
        if not chunk:
            parent_fd, chunk = None, b""  # every writer is gone: so is the parent
        pending += chunk
        complete, _, pending = pending.rpartition(b"\n")
        groups = _apply(groups, complete + b"\n" if complete else b"")


def _drain(fd):
    data = b""
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            return data
        data += chunk


def _apply(groups, lines):
    for line in lines.split():
        pgid = int(line[1:])
        if line[:1] == b"+":
            groups.add(pgid)
        else:
            groups.discard(pgid)
    return groups


def _child(parent, keeper, script, args, stdin_fd, out_w, err_w):
    """In the call's fork: lead the call's group, register it, become the script's process."""
    code = 70
    try:
        os.setpgid(0, 0)
        # Die with the warm parent; the check closes the race with a parent
        # that died before prctl. Registered after it, so the keeper knows
        # the group before anything in it can start another process.
        _PRCTL(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:
            os._exit(code)
        os.write(keeper, b"+%d\n" % os.getpid())
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.dup2(stdin_fd, 0)
        os.dup2(out_w, 1)
        os.dup2(err_w, 2)
        _close_all_but({0, 1, 2})
        sys.stdin = sys.__stdin__ = open(0, "r", closefd=False)
        sys.stdout = sys.__stdout__ = open(1, "w", closefd=False)
        sys.stderr = sys.__stderr__ = open(2, "w", closefd=False, errors="backslashreplace", buffering=1)
        sys.argv = [script, *args]
        code = _run_main(script)
    except BaseException:
        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        os._exit(code)


def _run_main(script):
    """Runs the script as `python script.py` would; returns its exit code."""
    code = 0
    # A fresh __main__, as the interpreter gives a script (runpy would also
    # work, at the cost of its import machinery on every call).
    main = types.ModuleType("__main__")
    main.__file__ = script
    main.__builtins__ = builtins
    sys.modules["__main__"] = main
    try:
        with open(script, "rb") as f:
            source = f.read()
        exec(compile(source, script, "exec"), main.__dict__)
    except SystemExit as e:
        if e.code is None:
            code = 0
        elif isinstance(e.code, int):
            code = e.code
        else:
            print(e.code, file=sys.stderr)
            code = 1
    except BaseException:
        traceback.print_exc()
        code = 1
    # What the interpreter does at exit: wait for the script's threads, run
    # its atexit handlers (os._exit would skip both).
    shutdown = getattr(threading, "_shutdown", None)
    if shutdown is not None:
        shutdown()
    atexit._run_exitfuncs()
    return code


def main(argv=None):
    parser = argparse.ArgumentParser(prog="skep-preload", description=__doc__.split("\n\n")[0])
    parser.add_argument("--preload", default="", help="modules to import once, comma-separated")
    parser.add_argument("--timeout-ms", type=int, default=30_000, help="a call's child is killed after this")
    parser.add_argument("script", help="the Python script each call runs as __main__")
    args = parser.parse_args(argv)
    # The protocol keeps a private copy of fd 1; a print at import time goes to stderr.
    wire = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    script = os.path.abspath(args.script)
    # As `python script.py`: the script's directory leads sys.path, for the
    # preloaded imports and for the script's own.
    if sys.path and sys.path[0] in ("", os.getcwd()):
        sys.path[0] = os.path.dirname(script)
    else:
        sys.path.insert(0, os.path.dirname(script))
    for name in filter(None, (m.strip() for m in args.preload.split(","))):
        before = {t.ident for t in threading.enumerate()}
        importlib.import_module(name)
        started = [t.name for t in threading.enumerate() if t.ident not in before]
        if started:
            log(
                f"importing {name} started threads {started}: a forked call has none of them "
                "(and may inherit their locks held); move that set-up into the script "
                "(docs/agents.md, preload mode)"
            )
    # What the imports built is never collected in the parent: frozen, the
    # children's collector leaves it alone, and its pages stay shared.
    gc.freeze()
    if not os.path.isfile(script):
        log(f"no such script: {script}")
        return 1
    Preloader(wire, script, args.timeout_ms / 1000, start_keeper()).serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
