// The call path's concurrency: answers are settled in batches from the
// runtime's thread (src/completions.rs), so each must still reach exactly its
// own promise; a cache hit is settled on Node's thread before call() returns
// (src/handoff.rs); a call in flight keeps Node running; and Node made to
// exit with calls in flight leaves no agent behind.
'use strict'
const test = require('node:test')
const assert = require('node:assert/strict')
const { spawn } = require('node:child_process')
const path = require('node:path')
const { inspect } = require('node:util')
const { Swarm } = require('..')
const { testAgentToml, waitFor, alive } = require('./helpers')

const PKG = path.resolve(__dirname, '..')

test('128 calls in flight: each resolves with its own result, each failure rejects only its own promise', { timeout: 60_000 }, async (t) => {
  const swarm = await Swarm.fromToml(testAgentToml({ minWarm: 2, maxAgents: 2 }))
  t.after(() => swarm.close())

  const fails = (i) => i % 5 === 3
  const calls = Array.from({ length: 128 }, (_, i) =>
    fails(i)
      ? swarm.call('agent', 'fail', { code: -32000 - i, message: `call ${i} failed` })
      : swarm.call('agent', 'echo', { i, text: 'x'.repeat(i) }),
  )
  const settled = await Promise.allSettled(calls)
  settled.forEach((outcome, i) => {
    if (fails(i)) {
      assert.equal(outcome.status, 'rejected', `call ${i} resolved with ${JSON.stringify(outcome.value)}`)
      assert.equal(outcome.reason.code, 'SKEP_AGENT_ERROR')
      assert.equal(outcome.reason.rpcCode, -32000 - i)
      assert.equal(outcome.reason.message, `call ${i} failed`)
    } else {
      assert.equal(outcome.status, 'fulfilled', `call ${i} rejected: ${outcome.reason?.message}`)
      assert.deepEqual(outcome.value, { i, text: 'x'.repeat(i) })
    }
  })
})

test('a cache hit is settled before call() returns; a miss, or bypassCache, goes to the agent', { timeout: 60_000 }, async (t) => {
  const swarm = await Swarm.fromToml(testAgentToml({ extra: 'idempotent = ["echo"]' }))
  t.after(() => swarm.close())
  const settledAt = (promise) => inspect(promise).includes('<pending>') ? 'pending' : 'settled'

  assert.deepEqual(await swarm.call('agent', 'echo', { n: 1 }), { n: 1 })
  const hit = swarm.call('agent', 'echo', { n: 1 })
  assert.equal(settledAt(hit), 'settled', inspect(hit))
  assert.deepEqual(await hit, { n: 1 })

  // (A miss may be settled at once too, when the agent answers while this
  // thread is still taking the call's first steps; nothing to assert there.)
  const miss = swarm.call('agent', 'echo', { n: 2 })
  const bypass = swarm.call('agent', 'echo', { n: 1 }, { bypassCache: true })
  assert.deepEqual(await Promise.all([miss, bypass]), [{ n: 2 }, { n: 1 }])

  // 128 at once, half of them hits: each still gets its own answer.
  const mixed = await Promise.all(Array.from({ length: 128 }, (_, i) => swarm.call('agent', 'echo', { n: i % 2 ? 1 : 100 + i })))
  mixed.forEach((answer, i) => assert.deepEqual(answer, { n: i % 2 ? 1 : 100 + i }))
  const [stats] = (await swarm.stats()).roles
  assert.equal(stats.cache.hits, 1 + 64)
})

test('params go as JSON.stringify gives them, answers come as JSON.parse reads them', { timeout: 60_000 }, async (t) => {
  const swarm = await Swarm.fromToml(testAgentToml())
  t.after(() => swarm.close())

  const sent = { at: new Date(0), gone: undefined, list: [1, 'two', null], deep: { a: { b: true } } }
  assert.deepEqual(await swarm.call('agent', 'echo', sent), JSON.parse(JSON.stringify(sent)))
  // A key named __proto__ stays a key: the answer's prototype is untouched.
  const answer = await swarm.call('agent', 'echo', JSON.parse('{"__proto__": {"polluted": 1}}'))
  assert.equal(Object.getPrototypeOf(answer), Object.prototype)
  assert.equal(answer.polluted, undefined)
  assert.deepEqual(Object.keys(answer), ['__proto__'])

  // Refused params reject the call's promise; nothing is thrown.
  for (const [params, why] of [
    ['hi', /got a string/],
    [{ big: 1n }, /not JSON.*BigInt/],
    [{ toJSON: () => 'flat' }, /toJSON\(\) gave "flat"/],
  ]) {
    const call = swarm.call('agent', 'echo', params)
    await assert.rejects(call, (e) => e.code === 'SKEP_INVALID_ARG' && why.test(e.message))
  }
})

/** Runs `script` in a child Node with the package as `Swarm` and `SKEP_TOML` set; its stdout lines and exit. */
async function runChild(t, script, toml, { prelude = true } = {}) {
  const loaded = prelude ? `const { Swarm } = require(${JSON.stringify(PKG)});\n` : ''
  const proc = spawn(process.execPath, ['-e', loaded + script], {
    env: { ...process.env, SKEP_TOML: toml },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  t.after(() => proc.kill('SIGKILL'))
  let stdout = ''
  let stderr = ''
  proc.stdout.on('data', (d) => (stdout += d))
  proc.stderr.on('data', (d) => (stderr += d))
  const exit = await new Promise((resolve) => proc.on('exit', (code, signal) => resolve({ code, signal })))
  return { lines: stdout.split('\n').filter(Boolean), exit, stderr }
}

test('a call in flight keeps Node running until it settles', { timeout: 60_000 }, async (t) => {
  // Nothing else is left in the event loop once the call is made: only the
  // call in flight can keep Node alive long enough to print its answer.
  const script = `
Swarm.fromToml(process.env.SKEP_TOML).then((swarm) => {
  swarm.call('agent', 'sleep', { ms: 200 }).then((answer) => process.stdout.write(JSON.stringify(answer) + '\\n'))
})`
  const { lines, exit, stderr } = await runChild(t, script, testAgentToml())
  assert.deepEqual(exit, { code: 0, signal: null }, stderr)
  assert.deepEqual(lines, ['{"slept":200}'], stderr)
})

test('process.exit with 128 calls in flight leaves no agent', { timeout: 60_000 }, async (t) => {
  // The agents ignore stdin's end, so only skep can stop them.
  const script = `
Swarm.fromToml(process.env.SKEP_TOML).then(async (swarm) => {
  const pids = (await swarm.agents()).map((a) => a.pid)
  for (let i = 0; i < 128; i++) swarm.call('agent', 'sleep', { ms: 60000 }).catch(() => {})
  while (!(await swarm.agents()).every((a) => a.state === 'busy')) await new Promise((r) => setTimeout(r, 10))
  process.stdout.write(JSON.stringify(pids) + '\\n')
  process.exit(7)
})`
  const toml = testAgentToml({ minWarm: 2, maxAgents: 2, flags: ['--ignore-eof'], extra: 'queue_timeout = "120s"' })
  const { lines, exit, stderr } = await runChild(t, script, toml)
  assert.equal(exit.code, 7, stderr)
  const pids = JSON.parse(lines[0])
  assert.equal(pids.length, 2)
  await waitFor(`agents ${pids} to end`, () => pids.every((pid) => !alive(pid)))
})

test('worker threads: one ending with calls in flight, then the next and the main thread still get answers', { timeout: 60_000 }, async (t) => {
  // Each worker is the addon's only JavaScript environment while it runs
  // (the main thread loads it last), so ending one ends napi's runtime too.
  const script = `
const { Worker } = require('node:worker_threads')
const pkg = ${JSON.stringify(PKG)}
const inWorker = \`
const { parentPort, workerData } = require('node:worker_threads')
const { Swarm } = require(workerData.pkg)
Swarm.fromToml(process.env.SKEP_TOML).then(async (swarm) => {
  const answer = await swarm.call('agent', 'echo', { worker: workerData.n })
  for (let i = 0; i < 32; i++) swarm.call('agent', 'sleep', { ms: 200 }).catch(() => {})
  parentPort.postMessage(answer)
})\`
;(async () => {
  for (let n = 0; n < 3; n++) {
    const worker = new Worker(inWorker, { eval: true, workerData: { pkg, n } })
    worker.once('error', (e) => { console.log('worker failed: ' + e.message); process.exit(1) })
    console.log(JSON.stringify(await new Promise((resolve) => worker.once('message', resolve))))
    await worker.terminate()
  }
  const swarm = await require(pkg).Swarm.fromToml(process.env.SKEP_TOML)
  console.log(JSON.stringify(await swarm.call('agent', 'echo', { main: true })))
  await swarm.close()
})()`
  const { lines, exit, stderr } = await runChild(t, script, testAgentToml(), { prelude: false })
  assert.deepEqual(lines, ['{"worker":0}', '{"worker":1}', '{"worker":2}', '{"main":true}'], stderr)
  assert.deepEqual(exit, { code: 0, signal: null }, stderr)
})
