"""The preloader on its own (skep drives it in swarm/core/tests/preload.rs)."""
import sys

from conftest import KIT, Peer

PRELOADER = str(KIT / "skep_agent" / "preload.py")


def start(tmp_path, modules, script="print('ran')\n", timeout_ms=30_000):
    (tmp_path / "tool.py").write_text(script)
    argv = [sys.executable, PRELOADER, "--timeout-ms", str(timeout_ms), "--preload", ",".join(modules)]
    return Peer([*argv, str(tmp_path / "tool.py")])


def test_a_module_that_starts_threads_at_import_is_named_on_stderr(tmp_path):
    (tmp_path / "chatty.py").write_text(
        "import threading, time\n"
        "print('printed at import')\n"
        "threading.Thread(target=time.sleep, args=(3600,), name='poller', daemon=True).start()\n"
    )
    (tmp_path / "quiet.py").write_text("VALUE = 1\n")
    peer = start(tmp_path, ["quiet", "chatty"])
    try:
        assert peer.call(1, "initialize")["result"]["name"] == "skep-preload"
        assert peer.call(2, "run", {})["result"]["stdout"] == "ran\n"
        peer.close_stdin()
        assert peer.wait() == 0
        stderr = bytes(peer.stderr).decode()
        assert "importing chatty started threads ['poller']" in stderr
        assert "importing quiet" not in stderr
        # A print at import time went to stderr, never onto the wire.
        assert "printed at import" in stderr
        assert b"printed at import" not in bytes(peer.raw)
    finally:
        peer.kill()


def test_cancel_kills_the_call_and_answers_minus_32800(tmp_path):
    peer = start(tmp_path, [], script="import time\nprint('started', flush=True)\ntime.sleep(3600)\n")
    try:
        peer.request(1, "run", {})
        peer.send({"jsonrpc": "2.0", "method": "$/cancelRequest", "params": {"id": 1}})
        assert peer.recv() == {"jsonrpc": "2.0", "id": 1, "error": {"code": -32800, "message": "request cancelled"}}
        assert peer.call(2, "initialize")["result"]["name"] == "skep-preload"
    finally:
        peer.kill()


def test_args_must_be_strings(tmp_path):
    peer = start(tmp_path, [])
    try:
        reply = peer.call(1, "run", {"args": [1, 2]})
        assert reply["error"] == {"code": -32602, "message": "invalid params: args must be an array of strings"}
    finally:
        peer.kill()


def test_the_role_timeout_kills_the_call_even_without_a_cancel(tmp_path):
    peer = start(tmp_path, [], script="import time\nprint('partial', flush=True)\ntime.sleep(3600)\n", timeout_ms=300)
    try:
        result = peer.call(1, "run", {})["result"]
        assert result["exitCode"] is None
        assert result["status"] == "killed by SIGKILL (at its timeout, 0.3s)"
        assert result["stdout"] == "partial\n"
    finally:
        peer.kill()
