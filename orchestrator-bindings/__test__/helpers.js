// Shared by the tests: where the binaries are, and polling against deadlines
// (never sleeping to wait for something).
'use strict'
const fs = require('node:fs')
const path = require('node:path')

const repo = path.resolve(__dirname, '..', '..')

/** A binary of the workspace: `$ENV_NAME`, else target/debug, else target/release. */
function workspaceBinary(name, envName) {
  if (process.env[envName]) return process.env[envName]
  const target = process.env.CARGO_TARGET_DIR ?? path.join(repo, 'target')
  for (const profile of ['debug', 'release']) {
    const candidate = path.join(target, profile, name)
    if (fs.existsSync(candidate)) return candidate
  }
  throw new Error(`${name} is not built: run \`cargo build -p ${name === 'skep' ? 'skep' : 'skep-swarm'} --bins\` first (or set ${envName})`)
}

const testAgent = () => workspaceBinary('skep-test-agent', 'SKEP_TEST_AGENT')
const skepBinary = () => workspaceBinary('skep', 'SKEP_BIN')

/** A skep.toml with one role `agent` running the test agent with `flags`. */
function testAgentToml({ flags = [], minWarm = 1, maxAgents = 1, extra = '' } = {}) {
  const command = JSON.stringify([testAgent(), ...flags])
  return `[roles.agent]\ncommand = ${command}\nmin_warm = ${minWarm}\nmax_agents = ${maxAgents}\n${extra}\n`
}

/** Polls `check` until it returns a truthy value or `ms` pass. */
async function waitFor(what, check, ms = 10_000) {
  const deadline = Date.now() + ms
  for (;;) {
    const value = await check()
    if (value) return value
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

/** Whether `pid` is a live process (a zombie counts as gone). */
function alive(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8')
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3)
    return state !== 'Z' && state !== 'X'
  } catch {
    return false
  }
}

module.exports = { repo, testAgent, skepBinary, testAgentToml, waitFor, alive }
