#!/usr/bin/env node
// A minimal skep agent (Node 18 or later, no dependencies); see docs/agents.md.
// Methods: echo (returns its params), wordcount {"text": S} -> {"words": N},
// initialize -> {"name": "echo.mjs"}.
import { createInterface } from "node:readline";

class RpcError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

function call(method, params) {
  switch (method) {
    case "echo":
      return params ?? null; // absent params echo as null
    case "wordcount": {
      if (typeof params?.text !== "string") {
        throw new RpcError(-32602, 'wordcount expects {"text": string}');
      }
      const words = params.text.split(/\s+/).filter((w) => w !== "");
      return { words: words.length };
    }
    case "initialize": // only sent when the role has handshake = "initialize"
      return { name: "echo.mjs" };
    default:
      throw new RpcError(-32601, `method not found: ${method}`);
  }
}

// JSON.stringify never emits a raw newline, so one message is one line.
// process.stdout queues writes itself; there is nothing to flush by hand.
function send(message) {
  process.stdout.write(JSON.stringify(message) + "\n");
}

function error(id, code, message) {
  return { jsonrpc: "2.0", id, error: { code, message } };
}

function handle(line) {
  if (line.trim() === "") return;
  let msg;
  try {
    msg = JSON.parse(line);
  } catch {
    return send(error(null, -32700, "parse error"));
  }
  const isObject = typeof msg === "object" && msg !== null && !Array.isArray(msg);
  if (!isObject || typeof msg.method !== "string") {
    return send(error(isObject ? (msg.id ?? null) : null, -32600, "invalid request"));
  }
  if (!("id" in msg)) return; // a notification (such as $/cancelRequest): never answered
  try {
    send({ jsonrpc: "2.0", id: msg.id, result: call(msg.method, msg.params) });
  } catch (e) {
    if (!(e instanceof RpcError)) throw e; // a bug: crash, so skep reports it with our stderr
    send(error(msg.id, e.code, e.message));
  }
}

console.error("echo.mjs: started"); // logs go to stderr, never stdout
const lines = createInterface({ input: process.stdin, crlfDelay: Infinity, terminal: false });
lines.on("line", handle);
// stdin closed: skep is stopping us. Nothing else keeps the event loop alive,
// so Node exits with status 0 once queued output is written.
lines.on("close", () => console.error("echo.mjs: stdin closed, exiting"));
