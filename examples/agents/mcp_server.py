#!/usr/bin/env python3
"""A minimal MCP server over stdio (Python standard library only).

It follows the MCP stdio transport: one JSON-RPC 2.0 message per line. It
answers `initialize`, waits for `notifications/initialized`, lists its tools
with `tools/list` and runs them with `tools/call`. skep pools it with
`handshake = "mcp"`; see docs/agents.md, "Pooling MCP servers".

Tools: `echo {text}`, `add {a, b}`, `slow {ms}` (sleeps), and `cancelled`
(the request ids named by `notifications/cancelled` so far, for tests).
"""
import json
import sys
import time

PROTOCOL_VERSIONS = ["2025-06-18", "2025-03-26", "2024-11-05"]

TOOLS = [
    {"name": "echo", "description": "Returns its text.",
     "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}},
    {"name": "add", "description": "Adds two numbers.",
     "inputSchema": {"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
                     "required": ["a", "b"]}},
    {"name": "slow", "description": "Sleeps for ms milliseconds.",
     "inputSchema": {"type": "object", "properties": {"ms": {"type": "integer"}}, "required": ["ms"]}},
    {"name": "cancelled", "description": "Request ids cancelled so far.",
     "inputSchema": {"type": "object", "properties": {}}},
]

cancelled = []


def text(value):
    return {"content": [{"type": "text", "text": value}], "isError": False}


def call_tool(name, args):
    if name == "echo":
        return text(str(args["text"]))
    if name == "add":
        return text(str(args["a"] + args["b"]))
    if name == "slow":
        time.sleep(int(args["ms"]) / 1000)
        return text("slept %d ms" % int(args["ms"]))
    if name == "cancelled":
        return text(json.dumps(cancelled))
    # An unknown tool is a tool error, reported in the result as MCP asks.
    return {"content": [{"type": "text", "text": "unknown tool: %s" % name}], "isError": True}


def handle(method, params):
    if method == "initialize":
        asked = params.get("protocolVersion")
        version = asked if asked in PROTOCOL_VERSIONS else PROTOCOL_VERSIONS[0]
        return {"protocolVersion": version, "capabilities": {"tools": {}},
                "serverInfo": {"name": "skep-example-mcp", "version": "0.1.0"}}
    if method == "ping":
        return {}
    if method == "tools/list":
        return {"tools": TOOLS}
    if method == "tools/call":
        return call_tool(params.get("name"), params.get("arguments") or {})
    raise LookupError(method)


def main():
    print("mcp_server.py: ready", file=sys.stderr, flush=True)
    for line in iter(sys.stdin.readline, ""):
        if not line.strip():
            continue
        message = json.loads(line)
        method, params = message.get("method"), message.get("params") or {}
        if "id" not in message:
            if method == "notifications/cancelled":
                cancelled.append(params.get("requestId"))
            continue
        reply = {"jsonrpc": "2.0", "id": message["id"]}
        try:
            reply["result"] = handle(method, params)
        except LookupError:
            reply["error"] = {"code": -32601, "message": "method not found: %s" % method}
        except (KeyError, TypeError, ValueError) as e:
            reply["error"] = {"code": -32602, "message": "invalid params: %s" % e}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
