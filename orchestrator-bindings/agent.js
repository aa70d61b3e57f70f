// skep/agent: a warm skep agent in five lines (docs/agents.md). No native
// code and no dependencies: it only speaks the agent protocol on stdin/stdout.
'use strict'
const { AsyncLocalStorage } = require('node:async_hooks')

/** The notification an agent sends to report a call's progress (docs/protocol.md). */
const PROGRESS_METHOD = '$/progress'
const CANCEL_METHODS = new Set(['$/cancelRequest', 'notifications/cancelled'])
// A frame past this size is skipped, as skep's bridge does.
const MAX_FRAME = 16 * 1024 * 1024
const HEADER_PREFIXES = ['content-length', 'content-type']

/** A deliberate JSON-RPC error: the caller receives code, message and data unchanged. */
class AgentError extends Error {
  constructor(code, message, data) {
    super(message)
    this.name = 'AgentError'
    this.code = code
    this.data = data
  }
}

/** Reads frames in either framing, detected from the first bytes like the bridge. */
class FrameReader {
  constructor() {
    this.buf = Buffer.alloc(0)
    this.headers = null // null until detected
    this.skipping = 0 // bytes of an oversized Content-Length body still to drop
    this.skipLine = false // dropping an oversized line up to its newline
  }

  /** Feeds bytes; returns the frames now complete (Buffers, or {error} entries). */
  push(chunk) {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk
    const frames = []
    for (;;) {
      if (this.headers === null && !this.detect(false)) break
      const frame = this.headers ? this.nextHeaderFrame() : this.nextLine()
      if (frame === null) break
      if (frame !== undefined) frames.push(frame)
    }
    return frames
  }

  /** At end of input: a last unterminated line still counts. */
  end() {
    if (this.headers === null) this.detect(true)
    if (this.headers || this.skipLine) return []
    const rest = this.buf.toString('utf8')
    this.buf = Buffer.alloc(0)
    return rest.trim() ? [Buffer.from(rest)] : []
  }

  detect(atEnd) {
    const text = this.buf.toString('latin1').replace(/^[ \t\r\n]+/, '').slice(0, 14).toLowerCase()
    const undecided = text.length < 14 && HEADER_PREFIXES.some((p) => p.startsWith(text))
    if ((text && !undecided) || atEnd) {
      this.headers = HEADER_PREFIXES.some((p) => text.startsWith(p))
      return true
    }
    return false
  }

  nextLine() {
    const nl = this.buf.indexOf(10)
    if (nl < 0) {
      if (this.buf.length > MAX_FRAME) {
        this.buf = Buffer.alloc(0)
        this.skipLine = true
      }
      return null
    }
    const line = this.buf.subarray(0, nl)
    this.buf = this.buf.subarray(nl + 1)
    if (this.skipLine) {
      this.skipLine = false
      return { error: oversized() }
    }
    return line.toString('utf8').trim() ? line : undefined
  }

  nextHeaderFrame() {
    if (this.skipping) {
      const dropped = Math.min(this.skipping, this.buf.length)
      this.buf = this.buf.subarray(dropped)
      this.skipping -= dropped
      return this.skipping ? null : { error: oversized() }
    }
    let start = 0
    while (start < this.buf.length && ' \t\r\n'.includes(String.fromCharCode(this.buf[start]))) start++
    this.buf = this.buf.subarray(start)
    let end = this.buf.indexOf('\r\n\r\n')
    let sep = 4
    const alt = this.buf.indexOf('\n\n')
    if (alt >= 0 && (end < 0 || alt < end)) [end, sep] = [alt, 2]
    if (end < 0) {
      if (this.buf.length > 8192) {
        this.buf = Buffer.alloc(0)
        return { error: { code: -32700, message: 'parse error: header block over 8 KiB' } }
      }
      return null
    }
    let length = null
    for (const line of this.buf.subarray(0, end).toString('latin1').split(/\r?\n/)) {
      const colon = line.indexOf(':')
      if (colon < 0) {
        this.buf = this.buf.subarray(end + sep)
        return { error: { code: -32700, message: `parse error: header line without a colon: ${line}` } }
      }
      if (line.slice(0, colon).trim().toLowerCase() === 'content-length') length = Number(line.slice(colon + 1).trim())
    }
    if (!Number.isInteger(length) || length < 0) {
      this.buf = this.buf.subarray(end + sep)
      return { error: { code: -32700, message: 'parse error: no content-length header' } }
    }
    if (length > MAX_FRAME) {
      this.buf = this.buf.subarray(end + sep)
      this.skipping = length
      return undefined
    }
    if (this.buf.length < end + sep + length) return null
    const body = this.buf.subarray(end + sep, end + sep + length)
    this.buf = this.buf.subarray(end + sep + length)
    return body
  }
}

function oversized() {
  return { code: -32600, message: 'frame over the size limit', data: { limit: MAX_FRAME } }
}

/** Checks params against declared names (`'name'`, or `'name?'` when optional); maps arrays onto them. */
function bindParams(declared, params) {
  if (!declared) return params
  const names = declared.map((d) => d.replace(/\?$/, ''))
  const required = declared.filter((d) => !d.endsWith('?'))
  let named
  const unexpected = []
  if (params === undefined || params === null) {
    named = {}
  } else if (Array.isArray(params)) {
    named = {}
    params.forEach((value, i) => {
      if (i < names.length) named[names[i]] = value
      else unexpected.push(`#${i}`)
    })
  } else if (typeof params === 'object') {
    named = params
    for (const key of Object.keys(params)) if (!names.includes(key)) unexpected.push(key)
  } else {
    throw new AgentError(-32602, 'params must be an object or an array')
  }
  const missing = required.filter((name) => !(name in named))
  if (missing.length || unexpected.length) {
    const parts = []
    if (missing.length) parts.push(`missing ${missing.join(', ')}`)
    if (unexpected.length) parts.push(`unexpected ${unexpected.join(', ')}`)
    throw new AgentError(-32602, `invalid params: ${parts.join('; ')}`, { missing, unexpected })
  }
  return named
}

/** A skep agent: register methods with `agent.method(name, fn)`, then call `agent.run()`. */
class Agent {
  constructor({ name } = {}) {
    this.name = name ?? require('node:path').basename(process.argv[1] ?? 'agent')
    this.methods = new Map()
    this.calls = new Map()
    this.current = new AsyncLocalStorage()
    this.write = null
  }

  /** Registers `fn(params, { signal, progress, id })`; `options.params` names its params. */
  method(name, fn, options = {}) {
    if (typeof name !== 'string' || typeof fn !== 'function') throw new TypeError('method(name, fn) takes a string and a function')
    this.methods.set(name, { fn, params: options.params })
    return this
  }

  /** The current call's AbortSignal, aborted when the caller gives up. */
  get signal() {
    const call = this.current.getStore()
    if (!call) throw new Error('signal is only available while a method runs')
    return call.controller.signal
  }

  /** True once the caller has given up on the current call (false outside a call, as in Python). */
  cancelled() {
    const call = this.current.getStore()
    return call !== undefined && call.controller.signal.aborted
  }

  /** Tells the caller how far the current call has got: `fraction` in [0, 1] and/or a message. */
  progress(fraction, message) {
    const call = this.current.getStore()
    if (!call) throw new Error('progress() is only available while a method runs')
    this.sendProgress(call, fraction, message)
  }

  sendProgress(call, fraction, message) {
    if (call.done) return
    const params = { id: call.id }
    if (fraction !== undefined && fraction !== null) {
      if (typeof fraction !== 'number' || !(fraction >= 0 && fraction <= 1)) {
        throw new RangeError(`progress fraction must be within [0, 1], got ${fraction}`)
      }
      params.fraction = fraction
    }
    if (message !== undefined && message !== null) params.message = String(message)
    this.send({ jsonrpc: '2.0', method: PROGRESS_METHOD, params })
  }

  /** Serves stdin until it ends and every call has answered; then exits 0 unless `{ exit: false }`. */
  run({ exit = true } = {}) {
    // The protocol keeps the real stdout; everything else written to it
    // (console.log, a library's print) goes to stderr instead.
    const stdout = process.stdout
    const realWrite = stdout.write.bind(stdout)
    stdout.write = (...args) => process.stderr.write(...args)
    const reader = new FrameReader()
    return new Promise((resolve) => {
      const frames = (list) => {
        if (this.write === null && reader.headers !== null) {
          this.write = reader.headers
            ? (body) => realWrite(`Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`)
            : (body) => realWrite(`${body}\n`)
        }
        for (const frame of list) this.dispatch(frame)
      }
      process.stdin.on('data', (chunk) => frames(reader.push(chunk)))
      process.stdin.on('end', async () => {
        frames(reader.end())
        // skep is stopping us: let the calls in flight answer first.
        await Promise.allSettled([...this.calls.values()].map((call) => call.settled))
        stdout.write = realWrite
        resolve()
        if (exit) process.exit(0)
      })
    })
  }

  dispatch(frame) {
    if (frame.error) return this.sendError(null, frame.error)
    let msg
    try {
      msg = JSON.parse(frame.toString('utf8'))
    } catch {
      return this.sendError(null, { code: -32700, message: 'parse error' })
    }
    if (msg === null || typeof msg !== 'object' || Array.isArray(msg)) {
      return this.sendError(null, { code: -32600, message: 'invalid request: expected one JSON-RPC object' })
    }
    if (msg.method === undefined && ('result' in msg || 'error' in msg)) return // nothing waits for a response
    const hasId = 'id' in msg
    const { id, method, params } = msg
    if (hasId && id !== null && typeof id !== 'number' && typeof id !== 'string') {
      return this.sendError(null, { code: -32600, message: 'invalid request: bad id' })
    }
    if (typeof method !== 'string') {
      if (hasId) this.sendError(id, { code: -32600, message: 'invalid request: no method' })
      return
    }
    if (!hasId) return this.notification(method, params)
    const key = JSON.stringify(id)
    if (this.calls.has(key)) {
      return this.sendError(null, { code: -32600, message: `invalid request: id ${key} is already in flight` })
    }
    const call = { id, controller: new AbortController(), done: false }
    this.calls.set(key, call)
    call.settled = this.runCall(key, call, method, params)
  }

  notification(method, params) {
    if (!CANCEL_METHODS.has(method) || params === null || typeof params !== 'object') return
    const call = this.calls.get(JSON.stringify(params.id ?? params.requestId))
    if (call) call.controller.abort()
  }

  async runCall(key, call, method, params) {
    const { signal } = call.controller
    const cancelled = new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true }))
    try {
      const work = this.current.run(call, () => this.invoke(call, method, params))
      // A method that ignores its signal is answered -32800 anyway; its late result is dropped.
      const outcome = await Promise.race([work.then((result) => ({ result })), cancelled.then(() => null)])
      if (outcome === null || signal.aborted) throw new AgentError(-32800, 'request cancelled')
      this.finish(key, call, { jsonrpc: '2.0', id: call.id, result: outcome.result ?? null })
    } catch (e) {
      let error
      if (signal.aborted) error = { code: -32800, message: 'request cancelled' }
      else if (e instanceof AgentError) error = errorObject(e.code, e.message, e.data)
      else {
        const type = (e && e.name) || typeof e
        const message = e && e.message !== undefined ? e.message : String(e)
        console.error(`skep/agent: method ${method} failed:`, e)
        error = { code: -32603, message: `${type}: ${message}`, data: { type, message } }
      }
      this.finish(key, call, { jsonrpc: '2.0', id: call.id, error })
    }
  }

  async invoke(call, method, params) {
    const entry = this.methods.get(method)
    if (!entry) {
      if (method === 'initialize') return { name: this.name }
      throw new AgentError(-32601, `method not found: ${method}`)
    }
    const args = bindParams(entry.params, params)
    const context = {
      id: call.id,
      signal: call.controller.signal,
      progress: (fraction, message) => this.sendProgress(call, fraction, message),
    }
    return entry.fn(args, context)
  }

  finish(key, call, message) {
    call.done = true
    this.calls.delete(key)
    this.send(message)
  }

  sendError(id, error) {
    this.send({ jsonrpc: '2.0', id, error })
  }

  send(message) {
    let body
    try {
      body = JSON.stringify(message)
    } catch (e) {
      body = JSON.stringify({ jsonrpc: '2.0', id: message.id ?? null, error: { code: -32603, message: `result is not JSON: ${e.message}` } })
    }
    this.write(body)
  }
}

function errorObject(code, message, data) {
  const error = { code: Number.isInteger(code) ? code : -32603, message: String(message) }
  if (data !== undefined) error.data = data
  return error
}

Agent.Error = AgentError

module.exports = { Agent, AgentError, PROGRESS_METHOD }
