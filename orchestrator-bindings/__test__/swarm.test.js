// The package's API against real agents: the demo agents (Node) and skep's
// test agent (Rust), every method, every error code a caller can meet.
'use strict'
const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { Swarm } = require('..')
const { testAgentToml, waitFor } = require('./helpers')

/** Asserts that `promise` rejects with a skep error of `code`, and returns it. */
async function rejectsWith(promise, code, rpcCode) {
  const error = await promise.then(
    (value) => assert.fail(`resolved with ${JSON.stringify(value)}, expected ${code}`),
    (e) => e,
  )
  assert.ok(error instanceof Error, `not an Error: ${error}`)
  assert.equal(error.code, code, error.message)
  if (rpcCode !== undefined) assert.equal(error.rpcCode, rpcCode)
  return error
}

test('the demo swarm answers every method', async (t) => {
  const swarm = await Swarm.demo()
  t.after(() => swarm.close())

  assert.deepEqual(await swarm.call('demo', 'echo', { path: 'src', n: [1, 2] }), { path: 'src', n: [1, 2] })
  assert.deepEqual(await swarm.call('demo', 'wordcount', { text: 'one two three' }), { words: 3 })

  const settled = await swarm.fanout('demo', 'wordcount', [{ text: 'a' }, { text: 'a b' }, { bad: 1 }])
  assert.deepEqual(settled.slice(0, 2), [{ ok: { words: 1 } }, { ok: { words: 2 } }])
  assert.equal(settled[2].error.code, -32602)

  const win = await swarm.race([
    { role: 'demo', method: 'sleep', params: { ms: 5000 } },
    { role: 'demo', method: 'echo', params: ['fast'] },
  ])
  assert.deepEqual(win, { index: 1, result: ['fast'] })

  const replies = await swarm.broadcast('demo', 'echo', ['all'])
  assert.ok(replies.length >= 2, `${replies.length} replies`)
  for (const reply of replies) {
    assert.match(reply.agent, /^demo\/\d+$/)
    assert.deepEqual(reply.ok, ['all'])
  }

  const [role] = swarm.roles()
  assert.equal(role.name, 'demo')
  assert.equal(role.minWarm, 2)
  const agents = await swarm.agents()
  assert.ok(agents.length >= 2)
  for (const agent of agents) assert.ok(agent.pid > 0 && ['idle', 'busy'].includes(agent.state), JSON.stringify(agent))
  const stats = await swarm.stats()
  assert.equal(stats.roles[0].role, 'demo')
  assert.ok(stats.roles[0].calls >= 5, JSON.stringify(stats.roles[0]))
  assert.equal(stats.roles[0].breaker.state, 'closed')
})

test('errors carry a stable code, the JSON-RPC code and data', async (t) => {
  const swarm = await Swarm.fromToml(testAgentToml({ maxAgents: 2, extra: 'timeout = "10s"' }))
  t.after(() => swarm.close())

  const agentError = await rejectsWith(swarm.call('agent', 'fail', { code: -32042, message: 'no' }), 'SKEP_AGENT_ERROR', -32042)
  assert.equal(agentError.message, 'no')
  await rejectsWith(swarm.call('agent', 'nope'), 'SKEP_METHOD_NOT_FOUND', -32601)

  const unknown = await rejectsWith(swarm.call('ghost', 'echo'), 'SKEP_UNKNOWN_ROLE', -32602)
  assert.deepEqual(unknown.data.knownRoles, ['agent'])

  const timeout = await rejectsWith(swarm.call('agent', 'sleep', { ms: 3000 }, { timeoutMs: 50 }), 'SKEP_TIMEOUT', -32001)
  assert.equal(timeout.data.timeoutMs, 50)

  const crashed = await rejectsWith(swarm.call('agent', 'crash', { code: 7 }), 'SKEP_AGENT_CRASHED', -32003)
  assert.match(crashed.data.exitStatus, /7/)

  // Refused at the boundary, as rejections (never thrown), naming the argument.
  await rejectsWith(swarm.call('agent', 'echo', 'text'), 'SKEP_INVALID_ARG')
  await rejectsWith(swarm.call('agent', 'echo', {}, { timeoutMs: -5 }), 'SKEP_INVALID_ARG')
  await rejectsWith(swarm.fanout('agent', 'echo', [{}], { maxParallel: 0 }), 'SKEP_INVALID_ARG')
  const all = await rejectsWith(
    swarm.race([{ role: 'agent', method: 'fail' }, { role: 'agent', method: 'nope' }]),
    'SKEP_ALL_FAILED',
    -32000,
  )
  assert.equal(all.data.causes.length, 2)
})

test('a role whose agents keep failing opens its breaker: SKEP_CIRCUIT_OPEN', async (t) => {
  const extra = '[roles.agent.breaker]\nwindow = 4\nmin_calls = 2\nfailure_rate = 0.5\nopen_for = "30s"'
  const swarm = await Swarm.fromToml(testAgentToml({ maxAgents: 2, extra }))
  t.after(() => swarm.close())
  for (let i = 0; i < 2; i++) await rejectsWith(swarm.call('agent', 'sleep', { ms: 2000 }, { timeoutMs: 20 }), 'SKEP_TIMEOUT')
  const open = await rejectsWith(swarm.call('agent', 'echo', {}), 'SKEP_CIRCUIT_OPEN', -32002)
  assert.ok(open.data.retryAfterMs > 0, JSON.stringify(open.data))
})

test('a full pool with a short queue answers SKEP_OVERLOADED', async (t) => {
  const swarm = await Swarm.fromToml(testAgentToml({ extra: 'queue_timeout = "50ms"' }))
  t.after(() => swarm.close())
  const busy = swarm.call('agent', 'sleep', { ms: 1500 })
  await waitFor('the one agent to be busy', async () => (await swarm.agents())[0]?.state === 'busy')
  await rejectsWith(swarm.call('agent', 'echo', {}), 'SKEP_OVERLOADED', -32004)
  await busy
})

test('an AbortSignal rejects the call and cancels it on the wire', async (t) => {
  const swarm = await Swarm.fromToml(testAgentToml())
  t.after(() => swarm.close())

  const controller = new AbortController()
  const call = swarm.call('agent', 'sleep', { ms: 300 }, { signal: controller.signal })
  // Aborted once the agent has the call (before that, there is nothing to cancel on the wire).
  await waitFor('the agent to take the call', async () => (await swarm.agents())[0]?.state === 'busy')
  controller.abort()
  const error = await rejectsWith(call, 'SKEP_CANCELLED', -32800)
  assert.match(error.message, /aborted/)
  // The one agent got `$/cancelRequest` for that call: it says so once its sleep is over.
  const cancelled = await waitFor('the agent to see the cancel', async () => {
    const ids = await swarm.call('agent', 'cancelled')
    return ids.length > 0 && ids
  })
  assert.equal(cancelled.length, 1)

  const already = AbortSignal.abort()
  await rejectsWith(swarm.call('agent', 'echo', {}, { signal: already }), 'SKEP_CANCELLED')
  const notASignal = await rejectsWith(swarm.call('agent', 'echo', {}, { signal: {} }), 'SKEP_INVALID_ARG')
  assert.match(notASignal.message, /options\.signal/)
})

test('onEvent delivers the swarm events until unsubscribed', async (t) => {
  const swarm = await Swarm.fromToml(testAgentToml())
  t.after(() => swarm.close())
  const seen = []
  const off = swarm.onEvent((event) => seen.push(event))
  await swarm.call('agent', 'echo', { x: 1 })
  const finished = await waitFor('callFinished', () => seen.find((e) => e.type === 'callFinished'))
  assert.deepEqual(
    { role: finished.role, method: finished.method, outcome: finished.outcome },
    { role: 'agent', method: 'echo', outcome: 'ok' },
  )
  assert.ok(seen.some((e) => e.type === 'callStarted' && e.agent === finished.agent))
  off()
  // A marker listener proves delivery still works; the unsubscribed one must
  // see nothing of a call made afterwards (another method, to tell them apart).
  const marker = []
  const offMarker = swarm.onEvent((event) => marker.push(event))
  await swarm.call('agent', 'pid')
  await waitFor('the marker listener', () => marker.some((e) => e.type === 'callFinished' && e.method === 'pid'))
  offMarker()
  const late = seen.filter((e) => e.method === 'pid')
  assert.deepEqual(late, [], 'events delivered after unsubscribing')
})

test('close stops every agent; later calls reject with SKEP_CLOSED', async () => {
  const swarm = await Swarm.fromToml(testAgentToml({ minWarm: 2, maxAgents: 2, flags: ['--ignore-eof'] }))
  const pids = (await swarm.agents()).map((a) => a.pid)
  assert.equal(pids.length, 2)
  await swarm.close()
  const { alive } = require('./helpers')
  for (const pid of pids) assert.equal(alive(pid), false, `agent ${pid} outlived close()`)
  await rejectsWith(swarm.call('agent', 'echo', {}), 'SKEP_CLOSED', -32005)
})

test('config errors reject with SKEP_CONFIG and say where', async () => {
  const error = await rejectsWith(Swarm.fromToml('[roles.a]\ncommand = ["x"]\nmin_wram = 1\n'), 'SKEP_CONFIG')
  assert.match(error.message, /min_wram/)
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'skep-node-'))
  const missing = await rejectsWith(Swarm.fromFile(path.join(dir, 'nope.toml')), 'SKEP_CONFIG')
  assert.match(missing.message, /nope\.toml/)
  fs.rmSync(dir, { recursive: true })
})

test('fromFile resolves the roles of a file', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'skep-node-'))
  const file = path.join(dir, 'skep.toml')
  fs.writeFileSync(file, testAgentToml())
  const swarm = await Swarm.fromFile(file)
  t.after(async () => {
    await swarm.close()
    fs.rmSync(dir, { recursive: true })
  })
  assert.equal(await swarm.call('agent', 'pid'), (await swarm.agents())[0].pid)
})

test('agents() shows what each agent costs, and a leaky one is recycled with the cause', async (t) => {
  const swarm = await Swarm.fromToml(
    testAgentToml({ flags: ['--grow-mb', '40'], maxAgents: 2, extra: 'max_rss = "100MiB"' }),
  )
  t.after(() => swarm.close())
  const recycled = []
  const off = swarm.onEvent((event) => {
    if (event.type === 'agentRecycled') recycled.push(event)
  })
  t.after(off)

  const first = await swarm.call('agent', 'pid')
  const sampled = await waitFor('a sample of the agent', async () =>
    (await swarm.agents()).find((a) => a.pid === first && typeof a.rssBytes === 'number'),
  )
  assert.ok(sampled.rssBytes >= 40 * 2 ** 20, JSON.stringify(sampled))
  assert.ok(sampled.processes >= 1 && sampled.recycled === null, JSON.stringify(sampled))

  // Each call keeps 40 MiB more: past 100 MiB after the third, the agent is replaced.
  const pids = [first]
  for (let i = 0; i < 4; i++) pids.push(await swarm.call('agent', 'pid'))
  assert.ok(pids.some((pid) => pid !== first), `never recycled: ${pids}`)
  await waitFor('the agentRecycled event', () => recycled.length > 0)
  assert.equal(recycled[0].cause, 'memory')
  assert.match(recycled[0].reason, /^RSS .* over max_rss 100\.0 MiB$/)
  const stats = await waitFor('the recycle in the stats', async () => {
    const role = (await swarm.stats()).roles[0]
    return role.recycled.memory >= 1 && role
  })
  assert.equal(typeof stats.rssBytes, 'number')
})
