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
        self._calls = {}  # shared by the reader thread, the loop and the pool: under the lock
        self._lock = threading.Lock()
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
        self._async_calls = set()
        ended = self._loop.create_future()
        reader = FrameReader(sys.stdin.fileno())
        pool = ThreadPoolExecutor(max_workers=self._threads, thread_name_prefix="skep-agent")
        threading.Thread(
            target=self._read, args=(reader, wire, pool, ended), name="skep-agent-reader", daemon=True
        ).start()
        try:
            await ended
            # End of input: skep is stopping us. Let the calls in flight answer.
            if self._async_calls:
                await asyncio.gather(*self._async_calls, return_exceptions=True)
        finally:
            pool.shutdown(wait=True)

    def _read(self, reader, wire, pool, ended):
        """The reader thread: parses each frame and routes it, without waiting on the loop.

        Plain functions go straight to the thread pool (one hand-off per call);
        only async methods, and what needs no method at all, go through the loop.
        """
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
            if frame is None:
                self._loop.call_soon_threadsafe(ended.set_result, None)
                return
            try:
                self._route(frame, pool)
            except Exception:  # a bug here must not silence the agent: log it, read on
                log.exception("routing a message failed")

    def _route(self, frame, pool):
        if isinstance(frame, tuple):
            _, code, message, data = frame
            return self._send_error(None, Error(code, message, data))
        try:
            msg = json.loads(frame.decode("utf-8"))
        except ValueError:  # not UTF-8 or not JSON
            return self._send_error(None, Error(-32700, "parse error"))
        if not isinstance(msg, dict):
            return self._send_error(None, Error(-32600, "invalid request: expected one JSON-RPC object"))
        method = msg.get("method")
        if method is None and ("result" in msg or "error" in msg):
            return None  # a response: this agent sends no requests, so nothing waits for one
        has_id = "id" in msg
        id = msg.get("id")
        if has_id and (isinstance(id, bool) or not isinstance(id, (int, float, str, type(None)))):
            return self._send_error(None, Error(-32600, "invalid request: bad id"))
        if not isinstance(method, str):
            return self._send_error(id, Error(-32600, "invalid request: no method")) if has_id else None
        params = msg.get("params")
        if not has_id:
            return self._notification(method, params)
        key = json.dumps(id)
        call = _Call(id)
        with self._lock:
            duplicate = key in self._calls
            if not duplicate:
                self._calls[key] = call
        if duplicate:
            return self._send_error(None, Error(-32600, f"invalid request: id {key} is already in flight"))
        entry = self._methods.get(method)
        if entry is not None and not entry.is_async:
            pool.submit(self._run_sync, key, call, method, entry, params)
        else:
            self._loop.call_soon_threadsafe(self._start_async, key, call, method, params)
        return None

    def _notification(self, method, params):
        if method not in _CANCEL_METHODS or not isinstance(params, dict):
            return
        id = params.get("id", params.get("requestId"))
        with self._lock:
            call = self._calls.get(json.dumps(id))
        if call is None:
            return  # already answered: normal
        call.cancel.set()
        self._loop.call_soon_threadsafe(_cancel_task, call)

    def _run_sync(self, key, call, method, entry, params):
        """A plain function's call, on a pool thread."""
        token = _current.set(call)
        try:
            if call.cancel.is_set():
                raise _Cancelled()
            args, kwargs = _bind(entry, params)
            result = entry.fn(*args, **kwargs)
            if call.cancel.is_set():
                raise _Cancelled()
            body = _encode({"jsonrpc": "2.0", "id": call.id, "result": result})
        except BaseException as e:  # noqa: B036 (every outcome is answered, then the thread goes on)
            self._answer_failure(call, method, e)
        else:
            self._write(body)
        finally:
            _current.reset(token)
            self._forget(key)

    def _start_async(self, key, call, method, params):
        task = self._loop.create_task(self._run_async(key, call, method, params))
        self._async_calls.add(task)
        task.add_done_callback(self._async_calls.discard)

    async def _run_async(self, key, call, method, params):
        _current.set(call)  # this task runs in its own copy of the context
        try:
            entry = self._methods.get(method)
            if entry is None:
                if method != "initialize":
                    raise Error(-32601, f"method not found: {method}")
                result = {"name": self.name}
            else:
                args, kwargs = _bind(entry, params)
                if call.cancel.is_set():
                    raise asyncio.CancelledError()
                call.task = asyncio.ensure_future(entry.fn(*args, **kwargs))
                result = await call.task
            if call.cancel.is_set():
                raise asyncio.CancelledError()
            body = _encode({"jsonrpc": "2.0", "id": call.id, "result": result})
        except BaseException as e:  # noqa: B036 (CancelledError included: it is this call's answer)
            self._answer_failure(call, method, e)
        else:
            self._write(body)
        finally:
            self._forget(key)

    def _answer_failure(self, call, method, e):
        if isinstance(e, (asyncio.CancelledError, _Cancelled)):
            self._send_error(call.id, Error(-32800, "request cancelled"))
        elif isinstance(e, Error):
            self._send_error(call.id, e)
        elif isinstance(e, Exception):
            log.exception("method %s failed", method, exc_info=e)
            kind = type(e).__name__
            self._send_error(call.id, Error(-32603, f"{kind}: {e}", {"type": kind, "message": str(e)}))
        else:  # KeyboardInterrupt, SystemExit: answer, then let it end the agent
            self._send_error(call.id, Error(-32603, f"{type(e).__name__}", {"type": type(e).__name__}))
            raise e

    def _forget(self, key):
        with self._lock:
            self._calls.pop(key, None)

    def _send(self, message):
        self._write(_encode(message))

    def _send_error(self, id, error):
        self._send({"jsonrpc": "2.0", "id": id, "error": error.to_json()})

    def _write(self, body):
        try:
            self._writer.write(body)
        except OSError as e:  # skep went away: nobody is left to answer
            log.warning("writing stdout failed: %s", e)


class _Cancelled(Exception):
    """A plain function's call was cancelled."""


def _cancel_task(call):
    if call.task is not None:
        call.task.cancel()


def _bind(entry, params):
    try:
        return bind(entry.signature, params)
    except ParamsMismatch as e:
        raise Error(-32602, str(e), {"missing": e.missing, "unexpected": e.unexpected}) from None


def _encode(message):
    try:
        return json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    except (TypeError, ValueError) as e:
        error = {"code": -32603, "message": f"result is not JSON: {e}"}
        return json.dumps({"jsonrpc": "2.0", "id": message.get("id"), "error": error}).encode("utf-8")
