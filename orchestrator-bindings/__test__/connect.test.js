// Swarm.connect: the same Swarm API over the shared daemon (docs/daemon.md),
// against a real daemon started by the test, shared with the skep CLI.
'use strict'
const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { execFileSync } = require('node:child_process')
const { Swarm } = require('..')
const { skepBinary, testAgentToml, waitFor, alive } = require('./helpers')

/** A private runtime and state directory and a config; the daemon is stopped after the test. */
function world(t) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'skep-node-connect-'))
  fs.chmodSync(dir, 0o700)
  const env = { ...process.env, XDG_RUNTIME_DIR: path.join(dir, 'run'), XDG_STATE_HOME: path.join(dir, 'state') }
  delete env.SKEP_NO_DAEMON
  fs.mkdirSync(env.XDG_RUNTIME_DIR, { mode: 0o700 })
  // The addon reads these from this process's environment, the daemon inherits them.
  const saved = { run: process.env.XDG_RUNTIME_DIR, state: process.env.XDG_STATE_HOME }
  process.env.XDG_RUNTIME_DIR = env.XDG_RUNTIME_DIR
  process.env.XDG_STATE_HOME = env.XDG_STATE_HOME
  const config = path.join(dir, 'skep.toml')
  fs.writeFileSync(config, testAgentToml({ maxAgents: 1 }))
  const skep = (...args) => execFileSync(skepBinary(), args, { env, cwd: dir, encoding: 'utf8' })
  t.after(() => {
    try { skep('down', '--config', config) } catch {}
    process.env.XDG_RUNTIME_DIR = saved.run ?? ''
    process.env.XDG_STATE_HOME = saved.state ?? ''
    if (saved.run === undefined) delete process.env.XDG_RUNTIME_DIR
    if (saved.state === undefined) delete process.env.XDG_STATE_HOME
    fs.rmSync(dir, { recursive: true, force: true })
  })
  return { dir, config, skep }
}

test('Swarm.connect starts the daemon and shares its warm agent with the CLI and other connections', async (t) => {
  const { config, skep } = world(t)
  const a = await Swarm.connect({ config, skep: skepBinary() })
  const b = await Swarm.connect({ config, autoStart: false })
  assert.deepEqual(a.roles().map((r) => r.name), ['agent'])
  const pid = await a.call('agent', 'pid')
  assert.equal(await b.call('agent', 'pid'), pid, 'both connections reach the same warm agent')
  assert.equal(JSON.parse(skep('call', '--config', config, 'agent', 'pid', '[]')), pid, 'so does the CLI')
  assert.deepEqual(await a.call('agent', 'echo', { x: [1, 2] }), { x: [1, 2] })
  const agents = await b.agents()
  assert.deepEqual(agents.map((x) => x.pid), [pid])
  const stats = await b.stats()
  assert.equal(stats.roles[0].calls, 4)
  const fan = await a.fanout('agent', 'echo', [[1], [2]])
  assert.deepEqual(fan, [{ ok: [1] }, { ok: [2] }])
  await a.close()
  await assert.rejects(a.call('agent', 'pid'), (e) => e.code === 'SKEP_CLOSED')
  // Closing a connection leaves the daemon and its agent to the others.
  assert.equal(await b.call('agent', 'pid'), pid)
  await b.close()
  assert.ok(alive(pid), 'the warm agent outlives its Node callers')
})

test('over the daemon, errors keep their codes, AbortSignal cancels on the agent, onEvent sees other clients', async (t) => {
  const { config, skep } = world(t)
  const swarm = await Swarm.connect({ config, skep: skepBinary() })
  t.after(() => swarm.close())
  await assert.rejects(swarm.call('nope', 'echo'), (e) => e.code === 'SKEP_UNKNOWN_ROLE' && e.rpcCode === -32602)
  const events = []
  const stop = swarm.onEvent((e) => events.push(e))
  skep('call', '--config', config, 'agent', 'echo', '[42]')
  await waitFor('the CLI call seen as an event', () => events.some((e) => e.type === 'callFinished' && e.method === 'echo'))
  stop()
  const controller = new AbortController()
  const sleeping = swarm.call('agent', 'sleep', { ms: 1000 }, { signal: controller.signal })
  await waitFor('the call on the agent', async () => (await swarm.agents())[0].state === 'busy')
  controller.abort()
  await assert.rejects(sleeping, (e) => e.code === 'SKEP_CANCELLED')
  // The abort reached the agent, through the daemon, as $/cancelRequest.
  const cancelled = await swarm.call('agent', 'cancelled')
  assert.equal(cancelled.length, 1, JSON.stringify(cancelled))
  await assert.rejects(swarm.call('agent', 'sleep', { ms: 300 }, { timeoutMs: 50 }), (e) => e.code === 'SKEP_TIMEOUT')
})

test('onProgress over the daemon receives what the agent reports for the call', async (t) => {
  const { config } = world(t)
  const swarm = await Swarm.connect({ config, skep: skepBinary() })
  t.after(() => swarm.close())
  const seen = []
  assert.equal(await swarm.call('agent', 'progress', { steps: 2 }, { onProgress: (p) => seen.push(p) }), 2)
  await waitFor('both progress reports', () => seen.length === 2)
  assert.deepEqual(seen, [
    { fraction: 0.5, message: 'step 1' },
    { fraction: 1, message: 'step 2' },
  ])
  // Another call's progress goes to that call's listener only.
  assert.equal(await swarm.call('agent', 'progress', { steps: 3 }), 3)
  assert.equal(seen.length, 2)
})

test('runWorkflow over the daemon runs on its agents and streams progress', async (t) => {
  const { dir, config } = world(t)
  const wf = path.join(dir, 'wf.toml')
  fs.writeFileSync(wf, 'name = "wf"\n[[steps]]\nid = "a"\nrole = "agent"\nmethod = "pid"\n')
  const swarm = await Swarm.connect({ config, skep: skepBinary() })
  t.after(() => swarm.close())
  const pid = await swarm.call('agent', 'pid')
  const progress = []
  const record = await swarm.runWorkflow(wf, { noCache: true, onProgress: (p) => progress.push(p.event) })
  assert.equal(record.ok, true)
  assert.equal(record.steps[0].agent, 'agent/1', 'the step ran on the daemon\'s agent')
  assert.deepEqual((await swarm.agents()).map((a) => a.pid), [pid], 'on the warm one: no agent was started')
  assert.equal((await swarm.stats()).roles[0].calls, 2)
  assert.ok(progress.includes('started') && progress.includes('finished'), progress.join(','))
})
