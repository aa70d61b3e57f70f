"""The Agent: a method table plus the loop that serves it over stdin/stdout."""
import asyncio
import contextvars
import inspect
import json
import logging
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

from ._params import ParamsMismatch, bind
from ._wire import MAX_FRAME, FrameReader, FrameWriter, HeaderError, Oversized

log = logging.getLogger("skep_agent")

#: The notification an agent sends to report a call's progress (docs/protocol.md).
PROGRESS_METHOD = "$/progress"
_CANCEL_METHODS = ("$/cancelRequest", "notifications/cancelled")
_current = contextvars.ContextVar("skep_agent_call")


class Error(Exception):
    """A deliberate JSON-RPC error: the caller receives code, message and data unchanged."""

    def __init__(self, code, message, data=None):
        super().__init__(message)
        self.code = int(code)
        self.message = str(message)
        self.data = data

    def to_json(self):
        error = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error


class _Call:
    """One request in flight: its id as the peer wrote it, and how to cancel it."""

    __slots__ = ("id", "cancel", "task")

    def __init__(self, id):
        self.id = id
        self.cancel = threading.Event()
        self.task = None  # the asyncio task of an async method once started


class _Method:
    __slots__ = ("fn", "signature", "is_async")

    def __init__(self, fn):
        self.fn = fn
        self.signature = inspect.signature(fn)
        self.is_async = inspect.iscoroutinefunction(fn)


class Agent:
    """A skep agent: register methods with ``@agent.method``, then call ``agent.run()``."""

    Error = Error

    def __init__(self, name=None, threads=None):
        """``name`` answers ``initialize``; ``threads`` bounds how many plain functions run at once."""
        self.name = name or os.path.basename(sys.argv[0] or "agent")
        self._threads = threads
        self._methods = {}
        self._calls = {}
        self._writer = None
        self._loop = None

    def method(self, name=None, fn=None):
        """Register a method: ``@agent.method``, ``@agent.method("name")`` or ``agent.method("name", fn)``."""
        if callable(name):
            return self._register(name.__name__, name)
        if fn is not None:
            return self._register(name, fn)
        return lambda f: self._register(name or f.__name__, f)

    def _register(self, name, fn):
        self._methods[name] = _Method(fn)
        return fn

    def cancelled(self):
        """True once the caller has given up on the current call (for plain functions to poll)."""
        call = _current.get(None)
        return call is not None and call.cancel.is_set()

    def progress(self, fraction=None, message=None):
        """Tell the caller how far the current call has got: ``fraction`` in [0, 1] and/or a message."""
        call = _current.get(None)
        if call is None:
            raise RuntimeError("progress() is only available while a method runs")
        params = {"id": call.id}
        if fraction is not None:
            fraction = float(fraction)
            if not 0.0 <= fraction <= 1.0:
                raise ValueError(f"progress fraction must be within [0, 1], got {fraction}")
            params["fraction"] = fraction
        if message is not None:
            params["message"] = str(message)
        self._send({"jsonrpc": "2.0", "method": PROGRESS_METHOD, "params": params})

    def run(self):
        """Serve requests from stdin until it ends, then return once every call has answered."""
        sys.stdout.flush()
        # The protocol keeps a private copy of fd 1; fd 1 and sys.stdout point
        # at stderr, so a stray print() from any library (or native code)
        # cannot corrupt the wire.
        wire = os.dup(1)
        os.dup2(2, 1)
        saved = sys.stdout
        sys.stdout = sys.stderr
        try:
            asyncio.run(self._serve(wire))
        finally:
            sys.stdout = saved
            os.dup2(wire, 1)
            os.close(wire)

    async def _serve(self, wire):
        self._loop = asyncio.get_running_loop()
        frames = asyncio.Queue()
        reader = FrameReader(sys.stdin.fileno())
        threading.Thread(
            target=self._read, args=(reader, wire, frames), name="skep-agent-reader", daemon=True
        ).start()
        pool = ThreadPoolExecutor(max_workers=self._threads, thread_name_prefix="skep-agent")
        tasks = set()
        try:
            while True:
                frame = await frames.get()
                if frame is None:
                    break
                task = self._dispatch(frame, pool)
                if task is not None:
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
            # End of input: skep is stopping us. Let the calls in flight answer.
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            pool.shutdown(wait=True)

    def _read(self, reader, wire, frames):
        post = lambda item: self._loop.call_soon_threadsafe(frames.put_nowait, item)  # noqa: E731
        while True:
            try:
                frame = reader.read()
            except Oversized:
                frame = ("error", -32600, "frame over the size limit", {"limit": MAX_FRAME})
            except HeaderError as e:
                frame = ("error", -32700, f"parse error: {e}", None)
            except OSError as e:
                log.error("reading stdin failed: %s", e)
                frame = None
            if self._writer is None and reader.headers is not None:
                self._writer = FrameWriter(wire, reader.headers)
            post(frame)
            if frame is None:
                return

    def _dispatch(self, frame, pool):
        if isinstance(frame, tuple):
            _, code, message, data = frame
            self._send_error(None, Error(code, message, data))
            return None
        try:
            msg = json.loads(frame.decode("utf-8"))
        except ValueError:  # not UTF-8 or not JSON
            self._send_error(None, Error(-32700, "parse error"))
            return None
        if not isinstance(msg, dict):
            self._send_error(None, Error(-32600, "invalid request: expected one JSON-RPC object"))
            return None
        method = msg.get("method")
        if method is None and ("result" in msg or "error" in msg):
            return None  # a response: this agent sends no requests, so nothing waits for one
        has_id = "id" in msg
        id = msg.get("id")
        if has_id and (isinstance(id, bool) or not isinstance(id, (int, float, str, type(None)))):
            self._send_error(None, Error(-32600, "invalid request: bad id"))
            return None
        if not isinstance(method, str):
            if has_id:
                self._send_error(id, Error(-32600, "invalid request: no method"))
            return None
        params = msg.get("params")
        if not has_id:
            self._notification(method, params)
            return None
        key = json.dumps(id)
        if key in self._calls:
            self._send_error(None, Error(-32600, f"invalid request: id {key} is already in flight"))
            return None
        call = _Call(id)
        self._calls[key] = call
        return self._loop.create_task(self._run_call(key, call, method, params, pool))

    def _notification(self, method, params):
        if method not in _CANCEL_METHODS or not isinstance(params, dict):
            return
        id = params.get("id", params.get("requestId"))
        call = self._calls.get(json.dumps(id))
        if call is None:
            return  # already answered: normal
        call.cancel.set()
        if call.task is not None:
            call.task.cancel()

    async def _run_call(self, key, call, method, params, pool):
        _current.set(call)  # this task runs in its own copy of the context
        try:
            result = await self._invoke(call, method, params, pool)
            if call.cancel.is_set():
                raise asyncio.CancelledError()
            body = _encode({"jsonrpc": "2.0", "id": call.id, "result": result})
        except asyncio.CancelledError:
            self._send_error(call.id, Error(-32800, "request cancelled"))
        except Error as e:
            self._send_error(call.id, e)
        except Exception as e:
            log.exception("method %s failed", method)
            kind = type(e).__name__
            self._send_error(call.id, Error(-32603, f"{kind}: {e}", {"type": kind, "message": str(e)}))
        else:
            self._write(body)
        finally:
            del self._calls[key]

    async def _invoke(self, call, method, params, pool):
        entry = self._methods.get(method)
        if entry is None:
            if method == "initialize":
                return {"name": self.name}
            raise Error(-32601, f"method not found: {method}")
        try:
            args, kwargs = bind(entry.signature, params)
        except ParamsMismatch as e:
            raise Error(-32602, str(e), {"missing": e.missing, "unexpected": e.unexpected}) from None
        if call.cancel.is_set():
            raise asyncio.CancelledError()
        if entry.is_async:
            call.task = asyncio.ensure_future(entry.fn(*args, **kwargs))
            return await call.task
        context = contextvars.copy_context()
        return await self._loop.run_in_executor(pool, lambda: context.run(entry.fn, *args, **kwargs))

    def _send(self, message):
        self._write(_encode(message))

    def _send_error(self, id, error):
        self._send({"jsonrpc": "2.0", "id": id, "error": error.to_json()})

    def _write(self, body):
        try:
            self._writer.write(body)
        except OSError as e:  # skep went away: nobody is left to answer
            log.warning("writing stdout failed: %s", e)


def _encode(message):
    try:
        return json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    except (TypeError, ValueError) as e:
        error = {"code": -32603, "message": f"result is not JSON: {e}"}
        return json.dumps({"jsonrpc": "2.0", "id": message.get("id"), "error": error}).encode("utf-8")
