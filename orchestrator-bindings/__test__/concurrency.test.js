// Many calls at once: nothing blocks the event loop, every call is answered
// exactly once with its own result.
'use strict'
const test = require('node:test')
const assert = require('node:assert/strict')
const { Swarm } = require('..')
const { testAgentToml } = require('./helpers')

test('10,000 concurrent calls are each answered with their own result', async (t) => {
  const swarm = await Swarm.fromToml(testAgentToml({ minWarm: 4, maxAgents: 4, extra: 'queue_timeout = "120s"' }))
  t.after(() => swarm.close())

  // The event loop keeps turning while the calls are in flight.
  let ticks = 0
  const ticker = setInterval(() => ticks++, 1)
  const calls = Array.from({ length: 10_000 }, (_, i) => swarm.call('agent', 'echo', { i }))
  const results = await Promise.all(calls)
  clearInterval(ticker)

  results.forEach((result, i) => assert.deepEqual(result, { i }))
  assert.ok(ticks > 0, 'the event loop never ran while 10,000 calls were in flight')
  const [stats] = (await swarm.stats()).roles
  assert.equal(stats.calls, 10_000)
})
