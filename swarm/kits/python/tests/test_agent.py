"""Every feature of the Python kit, against a real agent process."""
import json

import pytest

REVIEW = """
from skep_agent import Agent
agent = Agent()

@agent.method
def review(path: str, strict: bool = False) -> dict:
    return {"path": path, "strict": strict}

@agent.method("explode")
def explode(what):
    raise ValueError(f"cannot handle {what}")

@agent.method
def refuse():
    raise agent.Error(-32050, "model refused", {"reason": "policy"})

agent.run()
"""


@pytest.mark.parametrize("headers", [False, True], ids=["newline", "content-length"])
def test_both_framings_are_detected_and_answered_in_kind(agent, headers):
    peer = agent(REVIEW, headers=headers)
    peer.request(1, "review", {"path": "a.py"})
    assert peer.recv() == {"jsonrpc": "2.0", "id": 1, "result": {"path": "a.py", "strict": False}}
    if headers:
        assert bytes(peer.raw).startswith(b"Content-Length: ")
    else:
        assert bytes(peer.raw) == b'{"jsonrpc":"2.0","id":1,"result":{"path":"a.py","strict":false}}\n'


def test_params_by_name_or_position_map_onto_the_signature(agent):
    peer = agent(REVIEW)
    assert peer.call(1, "review", {"strict": True, "path": "b"})["result"] == {"path": "b", "strict": True}
    assert peer.call(2, "review", ["c", True])["result"] == {"path": "c", "strict": True}
    assert peer.call(3, "review", ["d"])["result"] == {"path": "d", "strict": False}


def test_params_that_do_not_fit_are_minus_32602_naming_them(agent):
    peer = agent(REVIEW)
    assert peer.call(1, "review", {"strict": True, "colour": "red"})["error"] == {
        "code": -32602,
        "message": "invalid params: missing path; unexpected colour",
        "data": {"missing": ["path"], "unexpected": ["colour"]},
    }
    assert peer.call(2, "review", ["a", True, 3])["error"]["data"] == {"missing": [], "unexpected": ["#2"]}
    assert peer.call(3, "review")["error"]["data"] == {"missing": ["path"], "unexpected": []}


def test_an_exception_is_minus_32603_with_its_type_and_message(agent):
    peer = agent(REVIEW)
    assert peer.call(1, "explode", ["lava"])["error"] == {
        "code": -32603,
        "message": "ValueError: cannot handle lava",
        "data": {"type": "ValueError", "message": "cannot handle lava"},
    }
    # The traceback goes to stderr, where skep keeps the agent's tail.
    peer.close_stdin()
    assert peer.wait() == 0
    assert b"Traceback" in peer.stderr and b"ValueError: cannot handle lava" in peer.stderr


def test_agent_error_reaches_the_caller_unchanged(agent):
    peer = agent(REVIEW)
    assert peer.call(1, "refuse")["error"] == {"code": -32050, "message": "model refused", "data": {"reason": "policy"}}


def test_spec_errors_and_notifications(agent):
    peer = agent(REVIEW)
    assert peer.call(1, "nope")["error"] == {"code": -32601, "message": "method not found: nope"}
    peer.send(b"this is not json")
    assert peer.recv() == {"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": "parse error"}}
    peer.send({"jsonrpc": "2.0", "method": "review", "params": ["a notification gets no answer"]})
    peer.send(b"[1,2]")
    assert peer.recv()["error"]["code"] == -32600
    # Nothing was answered for the notification: the next message is id 2's.
    assert peer.call(2, "review", ["x"]) == {"jsonrpc": "2.0", "id": 2, "result": {"path": "x", "strict": False}}


def test_initialize_is_answered_without_being_declared(agent):
    peer = agent(REVIEW)
    reply = peer.call(1, "initialize", {"client": "skep", "version": "0.1.0"})
    assert reply == {"jsonrpc": "2.0", "id": 1, "result": {"name": "agent.py"}}


def test_stray_prints_and_native_writes_to_stdout_go_to_stderr(agent):
    peer = agent(
        """
        import os, sys
        from skep_agent import Agent
        agent = Agent()

        @agent.method
        def noisy():
            print("a library printed this")
            sys.stdout.write("and this\\n")
            os.write(1, b"native code wrote this\\n")
            return "ok"

        agent.run()
        """
    )
    assert peer.call(1, "noisy")["result"] == "ok"
    peer.close_stdin()
    assert peer.wait() == 0
    assert bytes(peer.raw) == b'{"jsonrpc":"2.0","id":1,"result":"ok"}\n'
    for line in (b"a library printed this", b"and this", b"native code wrote this"):
        assert line in peer.stderr


def test_end_of_input_lets_the_call_in_flight_answer_then_exits_0(agent):
    peer = agent(
        """
        import threading
        from skep_agent import Agent
        agent = Agent()
        gate = threading.Event()

        @agent.method
        def slow():
            agent.progress(message="started")
            gate.wait(30)
            return "finished"

        @agent.method
        async def open_gate():
            gate.set()

        agent.run()
        """
    )
    peer.request(1, "slow")
    assert peer.recv()["method"] == "$/progress"  # slow is running
    peer.request(2, "open_gate")
    peer.close_stdin()
    answers = {m["id"]: m for m in (peer.recv(), peer.recv())}
    assert answers[1]["result"] == "finished"
    assert peer.recv() is None  # stdout closed
    assert peer.wait() == 0


CONCURRENT = """
import asyncio, threading
from skep_agent import Agent
agent = Agent(threads=2)
lock = threading.Lock()
inside = {"now": 0, "most": 0}
release = threading.Event()
arrived = []
everyone = None

@agent.method
def enter():
    with lock:
        inside["now"] += 1
        inside["most"] = max(inside["most"], inside["now"])
    agent.progress(message="entered")
    release.wait(30)
    with lock:
        inside["now"] -= 1
    return inside["most"]

@agent.method
async def meet(name):
    # Both calls must be in flight at once on the one loop, or neither returns.
    global everyone
    if everyone is None:
        everyone = asyncio.Event()
    arrived.append(name)
    if len(arrived) == 2:
        everyone.set()
    await asyncio.wait_for(everyone.wait(), 30)
    return sorted(arrived)

@agent.method
async def open_gate():
    release.set()

agent.run()
"""


def test_async_methods_run_concurrently_on_one_loop(agent):
    peer = agent(CONCURRENT)
    peer.request(1, "meet", ["a"])
    peer.request(2, "meet", ["b"])
    answers = {m["id"]: m for m in (peer.recv(), peer.recv())}
    assert answers[1]["result"] == answers[2]["result"] == ["a", "b"]


def test_plain_functions_run_on_a_bounded_thread_pool(agent):
    peer = agent(CONCURRENT)
    for id in range(1, 5):
        peer.request(id, "enter")
    # Two progress notifications: two calls are inside, the other two wait for a thread.
    assert [peer.recv()["method"], peer.recv()["method"]] == ["$/progress", "$/progress"]
    peer.request(9, "open_gate")
    # 4 answers, 1 for open_gate, 2 progress notifications of the calls that waited.
    seen = [peer.recv() for _ in range(7)]
    results = [m for m in seen if m.get("id") in (1, 2, 3, 4)]
    assert sorted(m["id"] for m in results) == [1, 2, 3, 4]
    assert max(m["result"] for m in results) == 2


CANCEL = """
import asyncio, time
from skep_agent import Agent
agent = Agent()
seen = []

@agent.method
async def wait_forever():
    agent.progress(0.0, "waiting")
    try:
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        seen.append("async task cancelled")
        raise

@agent.method
def spin():
    agent.progress(0.0, "spinning")
    deadline = time.monotonic() + 30
    while not agent.cancelled() and time.monotonic() < deadline:
        time.sleep(0.01)
    seen.append("sync saw cancelled()" if agent.cancelled() else "sync ran out")
    return "stopped"

@agent.method
def log():
    return seen

agent.run()
"""


@pytest.mark.parametrize(
    "cancel",
    [
        {"method": "$/cancelRequest", "params": {"id": 1}},
        {"method": "notifications/cancelled", "params": {"requestId": 1, "reason": "user"}},
    ],
    ids=["lsp", "mcp"],
)
def test_a_cancel_notification_cancels_an_async_method(agent, cancel):
    peer = agent(CANCEL)
    peer.request(1, "wait_forever")
    assert peer.recv()["params"]["message"] == "waiting"
    peer.send({"jsonrpc": "2.0", **cancel})
    assert peer.recv() == {"jsonrpc": "2.0", "id": 1, "error": {"code": -32800, "message": "request cancelled"}}
    assert peer.call(2, "log")["result"] == ["async task cancelled"]


def test_a_plain_function_polls_cancelled(agent):
    peer = agent(CANCEL)
    peer.request(1, "spin")
    assert peer.recv()["params"]["message"] == "spinning"
    peer.send({"jsonrpc": "2.0", "method": "$/cancelRequest", "params": {"id": 1}})
    assert peer.recv()["error"]["code"] == -32800
    assert peer.call(2, "log")["result"] == ["sync saw cancelled()"]


def test_cancelling_an_answered_or_unknown_id_does_nothing(agent):
    peer = agent(CANCEL)
    assert peer.call(1, "log")["result"] == []
    peer.send({"jsonrpc": "2.0", "method": "$/cancelRequest", "params": {"id": 1}})
    peer.send({"jsonrpc": "2.0", "method": "$/cancelRequest", "params": {"id": 77}})
    assert peer.call(2, "log") == {"jsonrpc": "2.0", "id": 2, "result": []}


def test_progress_names_the_call_and_arrives_before_its_answer(agent):
    peer = agent(
        """
        from skep_agent import Agent
        agent = Agent()

        @agent.method
        def work(steps: int):
            for i in range(steps):
                agent.progress((i + 1) / steps, f"step {i + 1}")
            return steps

        @agent.method
        async def work_async():
            agent.progress(message="no fraction")
            return "done"

        agent.run()
        """
    )
    assert peer.call(3, "work", [2])["result"] == 2
    progress = [json.loads(line) for line in bytes(peer.raw).splitlines()[:2]]
    assert progress == [
        {"jsonrpc": "2.0", "method": "$/progress", "params": {"id": 3, "fraction": 0.5, "message": "step 1"}},
        {"jsonrpc": "2.0", "method": "$/progress", "params": {"id": 3, "fraction": 1.0, "message": "step 2"}},
    ]
    peer.request("x", "work_async")
    seen = peer.recv_until("x")
    assert seen == [
        {"jsonrpc": "2.0", "method": "$/progress", "params": {"id": "x", "message": "no fraction"}},
        {"jsonrpc": "2.0", "id": "x", "result": "done"},
    ]
