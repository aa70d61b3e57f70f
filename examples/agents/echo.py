#!/usr/bin/env python3
"""A minimal skep agent (Python 3, standard library only); see docs/agents.md.

Methods: echo (returns its params), wordcount {"text": S} -> {"words": N},
initialize -> {"name": "echo.py"}.
"""
import json
import sys


class RpcError(Exception):
    def __init__(self, code, message):
        super().__init__(message)
        self.code = code


def call(method, params):
    if method == "echo":
        return params  # absent params echo as null
    if method == "wordcount":
        if not isinstance(params, dict) or not isinstance(params.get("text"), str):
            raise RpcError(-32602, 'wordcount expects {"text": string}')
        return {"words": len(params["text"].split())}
    if method == "initialize":  # only sent when the role has handshake = "initialize"
        return {"name": "echo.py"}
    raise RpcError(-32601, f"method not found: {method}")


def send(message):
    # Compact JSON never contains a raw newline, so one message is one line.
    # Flush every line: skep waits for it, and a buffered answer looks like a hang.
    sys.stdout.write(json.dumps(message, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def error(id, code, message):
    return {"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}}


def main():
    print("echo.py: started", file=sys.stderr, flush=True)  # logs go to stderr, never stdout
    while True:
        # readline() returns each line as soon as it arrives; b"" means EOF.
        line = sys.stdin.buffer.readline()
        if not line:
            return 0  # stdin closed: skep is stopping us, so exit cleanly
        if not line.strip():
            continue
        try:
            msg = json.loads(line.decode("utf-8"))
        except ValueError:  # not UTF-8, or not JSON
            send(error(None, -32700, "parse error"))
            continue
        if not isinstance(msg, dict) or not isinstance(msg.get("method"), str):
            send(error(msg.get("id") if isinstance(msg, dict) else None, -32600, "invalid request"))
            continue
        if "id" not in msg:
            continue  # a notification (such as $/cancelRequest): never answered
        try:
            send({"jsonrpc": "2.0", "id": msg["id"], "result": call(msg["method"], msg.get("params"))})
        except RpcError as e:
            send(error(msg["id"], e.code, str(e)))


if __name__ == "__main__":
    sys.exit(main())
