// Issue 17: `onProgress` receives what the call's agent reports with
// `$/progress`; here the agent is written with the package's own kit.
'use strict'
const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { Swarm } = require('..')
const { waitFor } = require('./helpers')

const kit = path.resolve(__dirname, '..', 'agent.js')

test('onProgress receives the progress the agent reports for the call', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'skep-progress-'))
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }))
  const script = path.join(dir, 'agent.js')
  fs.writeFileSync(
    script,
    `const { Agent } = require(${JSON.stringify(kit)})
     const agent = new Agent()
     agent.method('work', async ({ steps }, { progress }) => {
       for (let i = 1; i <= steps; i++) progress(i / steps, 'step ' + i)
       return steps
     })
     agent.run()`,
  )
  const swarm = await Swarm.fromToml(`[roles.kit]\ncommand = ${JSON.stringify([process.execPath, script])}\n`)
  t.after(() => swarm.close())

  const seen = []
  assert.equal(await swarm.call('kit', 'work', { steps: 2 }, { onProgress: (p) => seen.push(p) }), 2)
  await waitFor('both progress reports', () => seen.length === 2)
  assert.deepEqual(seen, [
    { fraction: 0.5, message: 'step 1' },
    { fraction: 1, message: 'step 2' },
  ])
  // Without onProgress the call is unchanged, and nothing is delivered to the earlier listener.
  assert.equal(await swarm.call('kit', 'work', { steps: 3 }), 3)
  assert.equal(seen.length, 2)
})

test('onProgress must be a function', async (t) => {
  const swarm = await Swarm.demo()
  t.after(() => swarm.close())
  await assert.rejects(swarm.call('demo', 'echo', {}, { onProgress: 'yes' }), (e) => e.code === 'SKEP_INVALID_ARG' && /onProgress/.test(e.message))
})
