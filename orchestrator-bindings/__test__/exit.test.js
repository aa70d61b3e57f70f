// Agents never outlive Node, however Node ends. Each case runs a child Node
// process that starts a swarm of test agents which ignore stdin EOF (so only
// skep can end them), reports their pids, then ends in its own way.
'use strict'
const test = require('node:test')
const assert = require('node:assert/strict')
const { spawn } = require('node:child_process')
const path = require('node:path')
const { testAgentToml, waitFor, alive } = require('./helpers')

const child = `
const { Swarm } = require(${JSON.stringify(path.resolve(__dirname, '..'))})
const how = process.argv.at(-1)
Swarm.fromToml(process.env.SKEP_TOML).then(async (swarm) => {
  const pids = (await swarm.agents()).map((a) => a.pid)
  process.stdout.write(JSON.stringify(pids) + '\\n')
  // Ends only once the parent has seen the agents running (a line on stdin).
  await new Promise((resolve) => process.stdin.once('data', resolve))
  process.stdin.destroy()
  if (how === 'close') { await swarm.close(); return }
  if (how === 'exit') process.exit(3)
  if (how === 'throw') throw new Error('uncaught on purpose')
  // 'return': nothing left to do; Node exits when its event loop is empty.
})
`

/** Runs the child, returns the agent pids it reported and its exit. */
async function runChild(how, t) {
  const toml = testAgentToml({ minWarm: 2, maxAgents: 2, flags: ['--ignore-eof'] })
  const proc = spawn(process.execPath, ['-e', child, how], {
    env: { ...process.env, SKEP_TOML: toml },
    stdio: ['pipe', 'pipe', 'pipe'],
  })
  t.after(() => proc.kill('SIGKILL'))
  let stderr = ''
  proc.stderr.on('data', (d) => (stderr += d))
  const exited = new Promise((resolve) => proc.on('exit', (code, signal) => resolve({ code, signal })))
  const pids = await new Promise((resolve, reject) => {
    let out = ''
    proc.stdout.on('data', (d) => {
      out += d
      if (out.includes('\n')) resolve(JSON.parse(out.split('\n')[0]))
    })
    exited.then(() => reject(new Error(`child exited before reporting pids: ${stderr}`)))
  })
  assert.equal(pids.length, 2)
  for (const pid of pids) assert.ok(alive(pid), `agent ${pid} not running at start`)
  // 'wait' never gets its go-ahead: it is killed while waiting for it.
  if (how === 'wait') proc.kill('SIGKILL')
  else proc.stdin.write('go\n')
  return { pids, exit: await exited, stderr: () => stderr }
}

async function assertAgentsGone(pids) {
  await waitFor(`agents ${pids} to end`, () => pids.every((pid) => !alive(pid)))
}

test('after close()', async (t) => {
  const { pids, exit } = await runChild('close', t)
  assert.equal(exit.code, 0)
  await assertAgentsGone(pids)
})

test('on a normal exit without close()', async (t) => {
  const { pids, exit } = await runChild('return', t)
  assert.equal(exit.code, 0)
  await assertAgentsGone(pids)
})

test('on process.exit()', async (t) => {
  const { pids, exit } = await runChild('exit', t)
  assert.equal(exit.code, 3)
  await assertAgentsGone(pids)
})

test('on an uncaught exception', async (t) => {
  const { pids, exit, stderr } = await runChild('throw', t)
  assert.notEqual(exit.code, 0)
  assert.match(stderr(), /uncaught on purpose/)
  await assertAgentsGone(pids)
})

test('on SIGKILL of Node (the parent-death signal)', async (t) => {
  const { pids, exit } = await runChild('wait', t)
  assert.equal(exit.signal, 'SIGKILL')
  await assertAgentsGone(pids)
})
