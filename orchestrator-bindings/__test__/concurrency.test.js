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

  // The event loop keeps turning while the calls are in flight: a timer
  // fires before the last call, which sleeps 300 ms on its agent, answers.
  // (Answers are settled in batches, so the echoes alone may all land in
  // one turn of the loop; the sleeping call cannot, unless the loop is blocked.)
  let ticks = 0
  const ticker = setInterval(() => ticks++, 1)
  const calls = Array.from({ length: 10_000 }, (_, i) => swarm.call('agent', 'echo', { i }))
  const ticksBeforeLast = swarm.call('agent', 'sleep', { ms: 300 }).then(() => ticks)
  const results = await Promise.all(calls)
  assert.ok((await ticksBeforeLast) > 0, 'the event loop never ran while 10,000 calls were in flight')
  clearInterval(ticker)

  results.forEach((result, i) => assert.deepEqual(result, { i }))
  const [stats] = (await swarm.stats()).roles
  assert.equal(stats.calls, 10_001)
})
