// runWorkflow: a workflow file over the swarm's roles, with progress events,
// its record, smart skipping on the second run, and failures as data.
'use strict'
const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { Swarm } = require('..')
const { testAgentToml } = require('./helpers')

const workflow = `
name = "node"
[[steps]]
id = "ask"
role = "agent"
method = "echo"
params = { n = 21 }
[[steps]]
id = "count"
run = ["wc", "-c", "input.txt"]
inputs = ["input.txt"]
[[steps]]
id = "answer"
needs = ["ask", "count"]
role = "agent"
method = "echo"
params = { asked = "\${steps.ask.result.n}", counted = "\${steps.count.result.exitCode}" }
`

test('runWorkflow reports progress, resolves with the record, and skips unchanged steps', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'skep-node-wf-'))
  const swarm = await Swarm.fromToml(testAgentToml({ maxAgents: 2 }))
  t.after(async () => {
    await swarm.close()
    fs.rmSync(dir, { recursive: true, force: true })
  })
  fs.writeFileSync(path.join(dir, 'input.txt'), 'hello')
  const file = path.join(dir, 'flow.toml')
  fs.writeFileSync(file, workflow)

  const progress = []
  const first = await swarm.runWorkflow(file, { jobs: 2, onProgress: (p) => progress.push(p) })
  assert.equal(first.ok, true, JSON.stringify(first.steps))
  assert.deepEqual(first.steps.map((s) => [s.id, s.outcome, s.cacheHit]), [
    ['ask', 'ok', false],
    ['count', 'ok', false],
    ['answer', 'ok', false],
  ])
  assert.ok(first.analysis.criticalPath.includes('answer'), JSON.stringify(first.analysis))
  // Progress callbacks are queued to the event loop: all of them arrive, the last one says done.
  const done = await new Promise((resolve) => {
    const poll = () => (progress.at(-1)?.event === 'done' ? resolve(progress.at(-1)) : setImmediate(poll))
    poll()
  })
  assert.deepEqual([done.done, done.total], [3, 3])
  assert.deepEqual(progress.filter((p) => p.event === 'finished').map((p) => p.step).sort(), ['answer', 'ask', 'count'])

  const second = await swarm.runWorkflow(file)
  assert.deepEqual(second.steps.map((s) => s.cacheHit), [true, true, true])

  fs.writeFileSync(path.join(dir, 'input.txt'), 'hello again')
  const third = await swarm.runWorkflow(file)
  // The input changed: that step and its dependent run again, the rest comes from the cache.
  assert.deepEqual(third.steps.map((s) => [s.id, s.cacheHit]), [['ask', true], ['count', false], ['answer', false]])
  assert.ok(fs.existsSync(path.join(dir, '.skep', 'history.jsonl')))
})

test('runWorkflow: a failed step is data, a bad file a SKEP_WORKFLOW rejection', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'skep-node-wf-'))
  const swarm = await Swarm.fromToml(testAgentToml())
  t.after(async () => {
    await swarm.close()
    fs.rmSync(dir, { recursive: true, force: true })
  })
  const failing = path.join(dir, 'fail.toml')
  fs.writeFileSync(failing, 'name = "f"\n[[steps]]\nid = "bad"\nrole = "agent"\nmethod = "fail"\n[[steps]]\nid = "after"\nneeds = ["bad"]\nrole = "agent"\nmethod = "echo"\n')
  const record = await swarm.runWorkflow(failing)
  assert.equal(record.ok, false)
  assert.deepEqual(record.steps.map((s) => s.outcome), ['failed', 'skipped'])

  const unknownRole = path.join(dir, 'role.toml')
  fs.writeFileSync(unknownRole, 'name = "r"\n[[steps]]\nid = "x"\nrole = "ghost"\nmethod = "echo"\n')
  const error = await swarm.runWorkflow(unknownRole).then(assert.fail, (e) => e)
  assert.equal(error.code, 'SKEP_WORKFLOW')
  assert.match(error.message, /ghost/)
  const missing = await swarm.runWorkflow(path.join(dir, 'none.toml')).then(assert.fail, (e) => e)
  assert.equal(missing.code, 'SKEP_WORKFLOW')
  assert.match(missing.message, /none\.toml/)
})
