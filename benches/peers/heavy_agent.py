#!/usr/bin/env python3
"""The comparison's Python agent: it pays a realistic start-up before it can work.

Start-up is (1) real imports of standard-library modules that a client SDK
pulls in (asyncio, ssl, http.client, email, decimal, xml, logging, ...) and
(2) a fixed sleep of SKEP_BENCH_INIT_MS milliseconds (default 300) that stands
for building an SDK client: reading credentials, resolving endpoints, opening
a connection pool. The sleep is a documented stand-in, not a measurement.

Methods: echo (returns its params), work {"ms": N} (sleeps N ms, the "AI"
work, and returns {"slept": N}).

Run as a script, it is a newline-delimited JSON-RPC agent on stdin/stdout.
Imported, `init()` and `handle()` serve concurrent.futures workers.
"""
import asyncio  # noqa: F401  (the imports are the point: their cost is real)
import decimal  # noqa: F401
import email.parser  # noqa: F401
import email.policy  # noqa: F401
import http.client  # noqa: F401
import json
import logging  # noqa: F401
import os
import ssl  # noqa: F401
import sys
import time
import urllib.request  # noqa: F401
import xml.etree.ElementTree  # noqa: F401

INIT_MS = int(os.environ.get("SKEP_BENCH_INIT_MS", "300"))


def init():
    """The SDK client's set-up, simulated by a fixed sleep."""
    time.sleep(INIT_MS / 1000)


def handle(method, params):
    if method == "echo":
        return params
    if method == "work":
        time.sleep(params["ms"] / 1000)
        return {"slept": params["ms"]}
    raise ValueError("method not found: %s" % method)


def serve():
    out = sys.stdout
    for line in sys.stdin.buffer:
        msg = json.loads(line)
        if "id" not in msg:
            continue  # notifications such as $/cancelRequest
        try:
            reply = {"jsonrpc": "2.0", "id": msg["id"], "result": handle(msg["method"], msg.get("params"))}
        except ValueError as e:
            reply = {"jsonrpc": "2.0", "id": msg["id"], "error": {"code": -32601, "message": str(e)}}
        out.write(json.dumps(reply, separators=(",", ":")) + "\n")
        out.flush()


if __name__ == "__main__":
    init()
    serve()
