"""The kit's agent pooled by a real `skep serve`, spoken to as any caller would."""
import json
import sys
import textwrap

from conftest import KIT, Peer, alive, skep_binary

AGENT = """
import asyncio, os
from skep_agent import Agent
agent = Agent()

@agent.method
def review(path: str, strict: bool = False) -> dict:
    print("a stray print must not reach skep's wire")
    agent.progress(0.5, "half way")
    return {"path": path, "strict": strict, "pid": os.getpid()}

@agent.method
async def hang():
    await asyncio.sleep(3600)

agent.run()
"""


def start_sidecar(tmp_path, extra=""):
    script = tmp_path / "agent.py"
    script.write_text(textwrap.dedent(AGENT))
    config = tmp_path / "skep.toml"
    config.write_text(
        "[roles.kit]\n"
        f"command = {json.dumps([sys.executable, str(script)])}\n"
        f'env = {{ PYTHONPATH = "{KIT}" }}\n'
        'handshake = "initialize"\n'
        "concurrency = 4\n" + extra
    )
    return Peer([skep_binary(), "serve", "--config", str(config)])


def test_the_kit_agent_answers_through_skep_serve(tmp_path):
    sidecar = start_sidecar(tmp_path)
    try:
        sidecar.request(1, "swarm/call", {"role": "kit", "method": "review", "params": {"path": "a.py"}})
        *before, reply = sidecar.recv_until(1)
        # The agent's progress, relayed by skep under the caller's own id, before the answer.
        progress = {"id": 1, "fraction": 0.5, "message": "half way"}
        assert before == [{"jsonrpc": "2.0", "method": "$/progress", "params": progress}]
        assert reply["result"]["path"] == "a.py" and reply["result"]["strict"] is False
        agent_pid = reply["result"]["pid"]
        assert alive(agent_pid)
        # The stray print went to the agent's stderr, which skep keeps.
        tails = "".join(a["stderrTail"] for a in sidecar.call(4, "swarm/agents")["result"])
        assert "a stray print must not reach skep's wire" in tails

        bad = sidecar.call(2, "swarm/call", {"role": "kit", "method": "review", "params": {"nope": 1}})
        assert bad["error"]["code"] == -32602
        assert bad["error"]["data"] == {"missing": ["path"], "unexpected": ["nope"]}

        # A caller giving up: skep answers -32001 and tells the agent.
        timed_out = sidecar.call(3, "swarm/call", {"role": "kit", "method": "hang", "timeoutMs": 200})
        assert timed_out["error"]["code"] == -32001


        assert sidecar.call(5, "shutdown")["result"] is None
        assert sidecar.wait() == 0
        # The agent exited on its stdin's end, with nothing left behind.
        assert not alive(agent_pid)
    finally:
        sidecar.kill()
