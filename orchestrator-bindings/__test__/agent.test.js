// skep/agent, the Node agent kit: every feature against a real agent process
// that loads the kit through the package's own "exports" map.
'use strict'
const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { spawn } = require('node:child_process')
const { alive } = require('./helpers')

const pkg = path.resolve(__dirname, '..')
const DEADLINE_MS = 20_000

/** A real agent process running `source`, spoken to in one framing. */
class Peer {
  constructor(source, { headers = false } = {}) {
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'skep-node-agent-'))
    // `require('skep/agent')` resolves through node_modules, as in a user's project.
    fs.mkdirSync(path.join(this.dir, 'node_modules'))
    fs.symlinkSync(pkg, path.join(this.dir, 'node_modules', 'skep'))
    fs.writeFileSync(path.join(this.dir, 'agent.js'), source)
    this.headers = headers
    this.child = spawn(process.execPath, ['agent.js'], { cwd: this.dir, stdio: 'pipe', detached: true })
    this.raw = Buffer.alloc(0)
    this.stderr = ''
    this.messages = []
    this.waiters = []
    this.ended = false
    this.child.stdout.on('data', (chunk) => {
      this.raw = Buffer.concat([this.raw, chunk])
      this.parse()
    })
    this.child.stdout.on('end', () => {
      this.ended = true
      this.wake()
    })
    this.child.stderr.on('data', (chunk) => (this.stderr += chunk))
    this.exited = new Promise((resolve) => this.child.on('exit', (code) => resolve(code)))
    this.offset = 0
  }

  parse() {
    for (;;) {
      const rest = this.raw.subarray(this.offset)
      if (this.headers) {
        const end = rest.indexOf('\r\n\r\n')
        if (end < 0) break
        const length = Number(/Content-Length: (\d+)/.exec(rest.subarray(0, end).toString())[1])
        if (rest.length < end + 4 + length) break
        this.messages.push(JSON.parse(rest.subarray(end + 4, end + 4 + length)))
        this.offset += end + 4 + length
      } else {
        const nl = rest.indexOf(10)
        if (nl < 0) break
        this.messages.push(JSON.parse(rest.subarray(0, nl)))
        this.offset += nl + 1
      }
    }
    this.wake()
  }

  wake() {
    for (const waiter of this.waiters.splice(0)) waiter()
  }

  send(message) {
    let body = typeof message === 'string' ? message : JSON.stringify(message)
    body = this.headers ? `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}` : `${body}\n`
    this.child.stdin.write(body)
  }

  request(id, method, params) {
    this.send({ jsonrpc: '2.0', id, method, ...(params === undefined ? {} : { params }) })
  }

  /** The next message, or null once stdout has ended; fails past the deadline. */
  async recv() {
    const deadline = Date.now() + DEADLINE_MS
    while (!this.messages.length && !this.ended) {
      if (Date.now() > deadline) throw new Error(`no message within ${DEADLINE_MS} ms; stderr: ${this.stderr}`)
      await new Promise((resolve) => {
        const timer = setTimeout(resolve, 100)
        this.waiters.push(() => {
          clearTimeout(timer)
          resolve()
        })
      })
    }
    return this.messages.length ? this.messages.shift() : null
  }

  async call(id, method, params) {
    this.request(id, method, params)
    for (;;) {
      const message = await this.recv()
      assert.ok(message, `stdout ended before the answer to ${id}`)
      if (message.id === id && message.method === undefined) return message
    }
  }

  /** The drop guard: kill the agent's group and check nothing of it survives. */
  async kill() {
    try {
      process.kill(-this.child.pid, 'SIGKILL')
    } catch {}
    await this.exited
    assert.equal(alive(this.child.pid), false)
    fs.rmSync(this.dir, { recursive: true, force: true })
  }
}

function start(t, source, options) {
  const peer = new Peer(source, options)
  t.after(() => peer.kill())
  return peer
}

const REVIEW = `
const { Agent } = require('skep/agent')
const agent = new Agent()
agent.method('review', ({ path, strict = false }) => ({ path, strict }), { params: ['path', 'strict?'] })
agent.method('explode', ([what]) => { throw new TypeError('cannot handle ' + what) })
agent.method('refuse', () => { throw new Agent.Error(-32050, 'model refused', { reason: 'policy' }) })
agent.method('loud', () => { console.log('a stray console.log'); process.stdout.write('a raw write\\n'); return 'ok' })
agent.run()
`

for (const headers of [false, true]) {
  test(`both framings are detected and answered in kind (${headers ? 'content-length' : 'newline'})`, async (t) => {
    const peer = start(t, REVIEW, { headers })
    peer.request(1, 'review', { path: 'a.js' })
    assert.deepEqual(await peer.recv(), { jsonrpc: '2.0', id: 1, result: { path: 'a.js', strict: false } })
    if (headers) assert.ok(peer.raw.toString().startsWith('Content-Length: '))
    else assert.equal(peer.raw.toString(), '{"jsonrpc":"2.0","id":1,"result":{"path":"a.js","strict":false}}\n')
  })
}

test('declared params map positions onto names; a mismatch is -32602 naming it', async (t) => {
  const peer = start(t, REVIEW)
  assert.deepEqual((await peer.call(1, 'review', ['b', true])).result, { path: 'b', strict: true })
  assert.deepEqual((await peer.call(2, 'review', { strict: true, colour: 'red' })).error, {
    code: -32602,
    message: 'invalid params: missing path; unexpected colour',
    data: { missing: ['path'], unexpected: ['colour'] },
  })
  assert.deepEqual((await peer.call(3, 'review', ['a', true, 3])).error.data, { missing: [], unexpected: ['#2'] })
})

test('errors: thrown is -32603 with type and message, AgentError unchanged, spec errors', async (t) => {
  const peer = start(t, REVIEW)
  assert.deepEqual((await peer.call(1, 'explode', ['lava'])).error, {
    code: -32603,
    message: 'TypeError: cannot handle lava',
    data: { type: 'TypeError', message: 'cannot handle lava' },
  })
  assert.deepEqual((await peer.call(2, 'refuse')).error, { code: -32050, message: 'model refused', data: { reason: 'policy' } })
  assert.deepEqual((await peer.call(3, 'nope')).error, { code: -32601, message: 'method not found: nope' })
  peer.send('this is not json')
  assert.deepEqual(await peer.recv(), { jsonrpc: '2.0', id: null, error: { code: -32700, message: 'parse error' } })
  peer.send({ jsonrpc: '2.0', method: 'review', params: { path: 'a notification gets no answer' } })
  assert.deepEqual(await peer.call(4, 'initialize', {}), { jsonrpc: '2.0', id: 4, result: { name: 'agent.js' } })
  assert.ok(peer.stderr.includes('cannot handle lava'), 'the failure is logged on stderr')
})

test('stdout carries only the protocol; stray writes go to stderr; EOF exits 0', async (t) => {
  const peer = start(t, REVIEW)
  assert.equal((await peer.call(1, 'loud')).result, 'ok')
  peer.child.stdin.end()
  assert.equal(await peer.exited, 0)
  assert.equal(peer.raw.toString(), '{"jsonrpc":"2.0","id":1,"result":"ok"}\n')
  assert.ok(peer.stderr.includes('a stray console.log') && peer.stderr.includes('a raw write'))
})

const SLOW = `
const { Agent } = require('skep/agent')
const agent = new Agent()
const seen = []
let arrived = 0
let everyone
const met = new Promise((resolve) => (everyone = resolve))
agent.method('meet', async () => { if (++arrived === 2) everyone(); await met; return arrived })
agent.method('wait', (params, { signal, progress }) => {
  progress(0, 'waiting')
  return new Promise((resolve, reject) => {
    signal.addEventListener('abort', () => { seen.push('signal aborted: ' + signal.aborted); reject(signal.reason) })
  })
})
agent.method('poll', async () => {
  agent.progress(0, 'polling')
  while (!agent.cancelled()) await new Promise((resolve) => setTimeout(resolve, 10))
  seen.push('saw cancelled()')
})
agent.method('steps', async ({ n }) => {
  for (let i = 1; i <= n; i++) agent.progress(i / n, 'step ' + i)
  return n
})
agent.method('stubborn', (params, { progress }) => { progress(null, 'ignoring the signal'); return new Promise(() => {}) })
agent.method('seen', () => seen)
agent.method('finishLate', (params, { progress }) => {
  progress(null, 'started')
  return new Promise((resolve) => setTimeout(() => resolve('late but answered'), 50))
})
agent.run()
`

test('async methods run concurrently', async (t) => {
  const peer = start(t, SLOW)
  peer.request(1, 'meet')
  peer.request(2, 'meet')
  const answers = [await peer.recv(), await peer.recv()]
  assert.deepEqual(answers.map((a) => a.result), [2, 2])
})

for (const cancel of [
  { method: '$/cancelRequest', params: { id: 1 } },
  { method: 'notifications/cancelled', params: { requestId: 1, reason: 'user' } },
]) {
  test(`${cancel.method} aborts the method's signal and answers -32800`, async (t) => {
    const peer = start(t, SLOW)
    peer.request(1, 'wait')
    assert.equal((await peer.recv()).params.message, 'waiting')
    peer.send({ jsonrpc: '2.0', ...cancel })
    assert.deepEqual(await peer.recv(), { jsonrpc: '2.0', id: 1, error: { code: -32800, message: 'request cancelled' } })
    assert.deepEqual((await peer.call(2, 'seen')).result, ['signal aborted: true'])
  })
}

test('a method can poll agent.cancelled() instead of listening to its signal', async (t) => {
  const peer = start(t, SLOW)
  peer.request(1, 'poll')
  assert.equal((await peer.recv()).params.message, 'polling')
  peer.send({ jsonrpc: '2.0', method: '$/cancelRequest', params: { id: 1 } })
  assert.equal((await peer.recv()).error.code, -32800)
  const deadline = Date.now() + DEADLINE_MS
  let seen
  let id = 2
  while (!(seen = (await peer.call(id++, 'seen')).result).length && Date.now() < deadline);
  assert.deepEqual(seen, ['saw cancelled()'])
})

test('a method that ignores its signal is still answered -32800 at once', async (t) => {
  const peer = start(t, SLOW)
  peer.request(1, 'stubborn')
  assert.equal((await peer.recv()).params.message, 'ignoring the signal')
  peer.send({ jsonrpc: '2.0', method: '$/cancelRequest', params: { id: 1 } })
  assert.equal((await peer.recv()).error.code, -32800)
})

test('progress names the call and arrives before its answer', async (t) => {
  const peer = start(t, SLOW)
  peer.request('p', 'steps', { n: 2 })
  assert.deepEqual([await peer.recv(), await peer.recv(), await peer.recv()], [
    { jsonrpc: '2.0', method: '$/progress', params: { id: 'p', fraction: 0.5, message: 'step 1' } },
    { jsonrpc: '2.0', method: '$/progress', params: { id: 'p', fraction: 1, message: 'step 2' } },
    { jsonrpc: '2.0', id: 'p', result: 2 },
  ])
})

test('end of input lets the call in flight answer, then exits 0', async (t) => {
  const peer = start(t, SLOW)
  peer.request(1, 'finishLate')
  assert.equal((await peer.recv()).params.message, 'started')
  peer.child.stdin.end()
  assert.deepEqual(await peer.recv(), { jsonrpc: '2.0', id: 1, result: 'late but answered' })
  assert.equal(await peer.recv(), null)
  assert.equal(await peer.exited, 0)
})
