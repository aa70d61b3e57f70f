// The observe socket from Node: `skep stats` and `skep ls` can watch a swarm
// that lives in a Node process, started by observe() or by the config file.
'use strict'
const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { execFileSync } = require('node:child_process')
const { Swarm } = require('..')
const { skepBinary, testAgentToml } = require('./helpers')

function privateDir(t) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'skep-node-observe-'))
  fs.chmodSync(dir, 0o700)
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }))
  return dir
}

test('observe() serves the swarm to skep stats; close() removes the socket', async (t) => {
  const dir = privateDir(t)
  const swarm = await Swarm.fromToml(testAgentToml({ minWarm: 2, maxAgents: 2 }))
  t.after(() => swarm.close())
  const socket = await swarm.observe(path.join(dir, 'node.sock'))
  assert.equal(socket, path.join(dir, 'node.sock'))
  await swarm.call('agent', 'echo', { seen: true })

  const stats = JSON.parse(execFileSync(skepBinary(), ['stats', '--attach', socket, '--json'], { encoding: 'utf8' }))
  const text = JSON.stringify(stats)
  assert.match(text, /"agent"/)
  assert.ok(fs.existsSync(socket))

  await swarm.close()
  assert.equal(fs.existsSync(socket), false, 'the socket outlived close()')
})

test('a config file with [observe] socket is served from the start, and skep ls finds it', async (t) => {
  const dir = privateDir(t)
  const socket = path.join(dir, 'skep', 'from-config.sock')
  fs.mkdirSync(path.dirname(socket), { mode: 0o700 })
  const swarm = await Swarm.fromToml(`${testAgentToml()}\n[observe]\nsocket = ${JSON.stringify(socket)}\n`)
  t.after(() => swarm.close())
  assert.ok(fs.existsSync(socket))
  const listed = JSON.parse(
    execFileSync(skepBinary(), ['ls', '--json'], { encoding: 'utf8', env: { ...process.env, XDG_RUNTIME_DIR: dir } }),
  )
  assert.equal(listed.length, 1, JSON.stringify(listed))
  assert.deepEqual([listed[0].socket, listed[0].info.pid], [socket, process.pid])
})

test('observe() refuses a path another live orchestrator serves: SKEP_OBSERVE', async (t) => {
  const dir = privateDir(t)
  const socket = path.join(dir, 'taken.sock')
  const first = await Swarm.fromToml(testAgentToml())
  const second = await Swarm.fromToml(testAgentToml())
  t.after(() => Promise.all([first.close(), second.close()]))
  await first.observe(socket)
  const error = await second.observe(socket).then(assert.fail, (e) => e)
  assert.equal(error.code, 'SKEP_OBSERVE')
  assert.match(error.message, /in use/)
})
