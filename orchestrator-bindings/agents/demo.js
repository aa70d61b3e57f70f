#!/usr/bin/env node
// The demo role's agent for `Swarm.demo()`: JSON-RPC 2.0, one message per
// line on stdin/stdout, as every skep agent speaks (docs/agents.md).
// Methods, the same as skep's own demo agent: echo (returns its params),
// sleep {ms} (answers {slept: ms} after ms), wordcount {text} -> {words},
// fail {message} (answers error -32050 with that message).
'use strict'
const { createInterface } = require('node:readline')

class RpcError extends Error {
  constructor(code, message) {
    super(message)
    this.code = code
  }
}

const methods = {
  echo: async (params) => params ?? null,
  sleep: async (params) => {
    const ms = params?.ms
    if (!Number.isInteger(ms) || ms < 0) throw new RpcError(-32602, 'sleep expects {"ms": whole number}')
    await new Promise((resolve) => setTimeout(resolve, ms))
    return { slept: ms }
  },
  wordcount: async (params) => {
    if (typeof params?.text !== 'string') throw new RpcError(-32602, 'wordcount expects {"text": string}')
    return { words: params.text.split(/\s+/).filter((w) => w !== '').length }
  },
  fail: async (params) => {
    throw new RpcError(-32050, typeof params?.message === 'string' ? params.message : 'failed on purpose')
  },
}

function send(message) {
  process.stdout.write(JSON.stringify(message) + '\n')
}

async function handle(line) {
  if (line.trim() === '') return
  let msg
  try {
    msg = JSON.parse(line)
  } catch {
    return send({ jsonrpc: '2.0', id: null, error: { code: -32700, message: 'parse error' } })
  }
  if (msg === null || typeof msg !== 'object' || typeof msg.method !== 'string') {
    return send({ jsonrpc: '2.0', id: msg?.id ?? null, error: { code: -32600, message: 'invalid request' } })
  }
  if (msg.id === undefined) return // a notification, such as $/cancelRequest: nothing to answer
  const method = Object.hasOwn(methods, msg.method) ? methods[msg.method] : undefined
  try {
    if (!method) throw new RpcError(-32601, `method not found: ${msg.method}`)
    send({ jsonrpc: '2.0', id: msg.id, result: await method(msg.params) })
  } catch (e) {
    const code = e instanceof RpcError ? e.code : -32603
    send({ jsonrpc: '2.0', id: msg.id, error: { code, message: String(e.message ?? e) } })
  }
}

const input = createInterface({ input: process.stdin })
input.on('line', (line) => void handle(line))
// skep's agents must exit when their input ends.
input.on('close', () => process.exit(0))
