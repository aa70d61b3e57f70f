"""What every kit test shares: a real agent process and a peer that speaks to it."""
import json
import os
import queue
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

KIT = Path(__file__).resolve().parents[1]
REPO = KIT.parents[2]
DEADLINE = 20.0  # seconds any single wait may take before the test fails


def skep_binary():
    """The workspace's `skep`: $SKEP_BIN, else target/debug, else target/release."""
    if os.environ.get("SKEP_BIN"):
        return os.environ["SKEP_BIN"]
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    for profile in ("debug", "release"):
        candidate = target / profile / "skep"
        if candidate.exists():
            return str(candidate)
    raise RuntimeError("skep is not built: run `cargo build -p skep` first (or set SKEP_BIN)")


def kit_env():
    env = dict(os.environ)
    env["PYTHONPATH"] = str(KIT) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("PYTHONUNBUFFERED", None)  # a missing flush must show up in the tests
    return env


def alive(pid):
    """Whether pid is a live process (a zombie counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat[stat.rindex(")") + 2] not in "ZX"


def group_members(pgid):
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2 :].split()
            if int(fields[2]) == pgid and fields[0] not in "ZX":
                members.append(int(entry.name))
    return members


class Peer:
    """A child process spoken to over its stdin/stdout in one framing."""

    def __init__(self, argv, headers=False, env=None, cwd=None):
        self.headers = headers
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env or kit_env(),
            cwd=cwd,
            start_new_session=True,  # its own group, so the guard can kill everything it started
        )
        self.messages = queue.Queue()
        self.raw = bytearray()
        self.stderr = bytearray()
        threading.Thread(target=self._read_stdout, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()

    def _read_stdout(self):
        out = self.proc.stdout
        while True:
            if self.headers:
                header = b""
                while not header.endswith(b"\r\n\r\n"):
                    byte = out.read(1)
                    if not byte:
                        self.messages.put(None)
                        return
                    header += byte
                    self.raw += byte
                length = int(header.split(b":")[1].strip().split(b"\r\n")[0])
                body = out.read(length)
                self.raw += body
            else:
                body = out.readline()
                self.raw += body
                if not body:
                    self.messages.put(None)
                    return
            self.messages.put(json.loads(body))

    def _read_stderr(self):
        for line in self.proc.stderr:
            self.stderr += line

    def send(self, message):
        body = message if isinstance(message, bytes) else json.dumps(message).encode()
        if self.headers:
            body = b"Content-Length: %d\r\n\r\n" % len(body) + body
        else:
            body += b"\n"
        self.proc.stdin.write(body)
        self.proc.stdin.flush()

    def request(self, id, method, params=None):
        message = {"jsonrpc": "2.0", "id": id, "method": method}
        if params is not None:
            message["params"] = params
        self.send(message)

    def recv(self):
        """The next message the child wrote; fails the test past the deadline."""
        try:
            return self.messages.get(timeout=DEADLINE)
        except queue.Empty:
            pytest.fail(f"no message within {DEADLINE}s; stderr: {bytes(self.stderr)!r}")

    def recv_until(self, id):
        """Messages up to and including the response with this id."""
        seen = []
        while True:
            message = self.recv()
            assert message is not None, f"stdout ended before id {id}; got {seen}"
            seen.append(message)
            if message.get("id") == id and "method" not in message:
                return seen

    def call(self, id, method, params=None):
        self.request(id, method, params)
        return self.recv_until(id)[-1]

    def close_stdin(self):
        self.proc.stdin.close()

    def wait(self):
        return self.proc.wait(timeout=DEADLINE)

    def kill(self):
        """The drop guard: kill the child's whole group, then check nothing survived."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=DEADLINE)
        assert group_members(self.proc.pid) == [], "a process of the agent's group survived"


@pytest.fixture
def agent(tmp_path):
    """agent(source, headers=False): start a kit agent whose script is `source`."""
    peers = []

    def start(source, headers=False):
        script = tmp_path / "agent.py"
        script.write_text(textwrap.dedent(source))
        peer = Peer([sys.executable, str(script)], headers=headers)
        peers.append(peer)
        return peer

    yield start
    for peer in peers:
        peer.kill()
