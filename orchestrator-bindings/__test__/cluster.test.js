// A swarm made in Node joins its config's [cluster] as the CLI and the
// daemon do: a remote role's call runs on a `skep worker`'s agent over a real
// nats-server (loopback, a token), and a wrong token fails the start loudly.
'use strict'
const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const net = require('node:net')
const os = require('node:os')
const path = require('node:path')
const { spawn } = require('node:child_process')
const { Swarm } = require('..')
const { testAgent, skepBinary, waitFor, alive } = require('./helpers')

const TOKEN = 'node-test-token-7a2e'

function natsServer() {
  const found = ['/usr/sbin/nats-server', '/usr/bin/nats-server', '/usr/local/bin/nats-server'].find((p) => fs.existsSync(p))
  if (!found) throw new Error('nats-server is not installed: `apt-get install nats-server` (.ci/test does)')
  return found
}

/** A free loopback port (free now; the server's readiness wait catches a clash). */
function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address()
      server.close(() => resolve(port))
    })
  })
}

function listening(port) {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1', () => {
      socket.destroy()
      resolve(true)
    })
    socket.once('error', () => resolve(false))
  })
}

/** Kills `child` (SIGKILL) and waits for its exit. */
async function kill(child) {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = new Promise((resolve) => child.once('exit', resolve))
  child.kill('SIGKILL')
  await exited
}

test('a remote role called from Node runs on a worker, and a wrong token fails the start', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'skep-node-cluster-'))
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }))
  const port = await freePort()
  const nats = spawn(natsServer(), ['-a', '127.0.0.1', '-p', String(port), '--auth', TOKEN], { stdio: 'ignore' })
  t.after(() => kill(nats))
  await waitFor('nats-server to listen', () => listening(port))
  const url = `nats://127.0.0.1:${port}`

  const journal = path.join(dir, 'journal')
  fs.mkdirSync(journal)
  const workerToml = path.join(dir, 'worker.toml')
  fs.writeFileSync(workerToml, `[roles.echo]\ncommand = ${JSON.stringify([testAgent(), '--journal', journal])}\n`)
  let said = ''
  const worker = spawn(skepBinary(), ['worker', '--nats', url, '--config', workerToml], {
    env: { ...process.env, SKEP_NATS_TOKEN: TOKEN, SKEP_LOG: 'info' },
    stdio: ['ignore', 'ignore', 'pipe'],
  })
  worker.stderr.on('data', (chunk) => (said += chunk))
  t.after(() => kill(worker))
  // Logged once its subscriptions are on the server: a call from now on reaches it.
  await waitFor('the worker to be ready', () => said.includes('worker ready'))

  const orchestrator = `[cluster]\nnats = "${url}"\ntoken = "${TOKEN}"\n[roles.echo]\nremote = true\n`
  const swarm = await Swarm.fromToml(orchestrator)
  t.after(() => swarm.close())
  assert.deepEqual(await swarm.call('echo', 'echo', ['from node']), ['from node'])
  const files = fs.readdirSync(journal)
  assert.equal(files.length, 1, `one agent ran it: ${files}`)
  const agent = Number(path.parse(files[0]).name)
  const lines = fs.readFileSync(path.join(journal, files[0]), 'utf8').trim().split('\n').map((l) => JSON.parse(l))
  assert.deepEqual(lines.filter((l) => l.method === 'echo').map((l) => l.params), [['from node']])
  const stat = fs.readFileSync(`/proc/${agent}/stat`, 'utf8')
  const parent = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1])
  assert.equal(parent, worker.pid, 'the agent that ran the call is the worker child, not a local one')
  assert.ok(alive(agent))

  const wrong = orchestrator.replace(TOKEN, 'not-the-token')
  const error = await Swarm.fromToml(wrong).then(
    () => assert.fail('a wrong token started a swarm'),
    (e) => e,
  )
  assert.equal(error.code, 'SKEP_CLUSTER', error.message)
  assert.match(error.message, /refused our credentials/)
})
