#!/usr/bin/env node
// The MCP gateway against calling the same MCP server directly, side by
// side in one run (docs/benchmarks.md), with the official TypeScript SDK
// client on every side:
//   direct   the SDK spawns the server (state-server.mjs) and talks stdio to it;
//   relay    the SDK spawns `skep mcp`, which relays to the daemon's gateway;
//   http     the SDK talks Streamable HTTP to the daemon's gateway.
// 1. one tool call at a time: p50 and p99 per side, in alternating rounds;
// 2. a new session's first call: spawn/connect, initialize, one call, close;
// 3. 10 sessions (--fleet) each using 3 servers (state, memory, filesystem):
//    processes and RSS with one copy of each server per session (direct)
//    against 10 `skep mcp` relays to one daemon keeping one copy of each.
// Usage (after `cd manager/tests/mcp-clients && npm ci` and a release build):
//   node benches/mcp.mjs [--skep target/release/skep] [--calls 2000] [--rounds 5] [--sessions 20] [--fleet 10]
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { arg, clients, defaultSkep, scratchDaemon, sdk, stateServer as server } from './mcp_scratch.mjs'

const { Client } = await sdk('client/index.js')
const { StdioClientTransport } = await sdk('client/stdio.js')
const { StreamableHTTPClientTransport } = await sdk('client/streamableHttp.js')

const skep = path.resolve(arg('skep', defaultSkep))
const calls = Number(arg('calls', 2000))
const rounds = Number(arg('rounds', 5))
const sessions = Number(arg('sessions', 20))
const fleet = Number(arg('fleet', 10))

const { root, config, env, run } = scratchDaemon(skep, 'skep-bench-mcp-')

run('up')
const status = JSON.parse(run('status', '--json')).daemon.mcp
const url = status.http
const token = fs.readFileSync(status.token, 'utf8').trim()

const sides = {
  direct: () => new StdioClientTransport({ command: 'node', args: [server] }),
  relay: () => new StdioClientTransport({ command: skep, args: ['mcp', '--config', config], env }),
  http: () => new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers: { Authorization: `Bearer ${token}` } } }),
}
const tool = { direct: 'whoami', relay: 'state__whoami', http: 'state__whoami' }

async function open (side) {
  const client = new Client({ name: 'bench', version: '1' })
  const transport = sides[side]()
  await client.connect(transport)
  return { client, transport }
}
async function close ({ client, transport }) {
  if (transport.terminateSession) await transport.terminateSession()
  await client.close()
}

const pct = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]
}
const ms = (ns) => Number(ns) / 1e6

// 1. One call at a time on an open session.
const open_ = {}
for (const side of Object.keys(sides)) open_[side] = await open(side)
const lat = { direct: [], relay: [], http: [] }
for (const side of Object.keys(sides)) { // warm-up
  for (let i = 0; i < 200; i++) await open_[side].client.callTool({ name: tool[side], arguments: {} })
}
for (let r = 0; r < rounds; r++) {
  for (const side of Object.keys(sides)) {
    const { client } = open_[side]
    for (let i = 0; i < calls / rounds; i++) {
      const t = process.hrtime.bigint()
      await client.callTool({ name: tool[side], arguments: {} })
      lat[side].push(ms(process.hrtime.bigint() - t))
    }
  }
}
for (const side of Object.keys(sides)) await close(open_[side])

// 2. A new session's first call (the server's start included on the direct side).
const first = { direct: [], relay: [], http: [] }
for (let i = 0; i < sessions; i++) {
  for (const side of Object.keys(sides)) {
    const t = process.hrtime.bigint()
    const s = await open(side)
    await s.client.callTool({ name: tool[side], arguments: {} })
    first[side].push(ms(process.hrtime.bigint() - t))
    await close(s)
  }
}
run('down')

// 3. Ten sessions, three servers each: what is running, and its memory.
const servers = {
  state: [server],
  memory: [path.join(clients, 'node_modules', '@modelcontextprotocol', 'server-memory', 'dist', 'index.js')],
  fs: [path.join(clients, 'node_modules', '@modelcontextprotocol', 'server-filesystem', 'dist', 'index.js'), root],
}
const firstTool = { state: 'whoami', memory: 'read_graph', fs: 'list_allowed_directories' }
const fleetConfig = path.join(root, 'fleet.toml')
fs.writeFileSync(fleetConfig, Object.entries(servers).map(([name, args]) =>
  `[roles.${name}]\ncommand = ${JSON.stringify(['node', ...args])}\nhandshake = "mcp"\nmin_warm = 1\nmax_agents = 1\nconcurrency = 16\nenv = { MEMORY_FILE_PATH = "${path.join(root, 'memory.jsonl')}" }\n`).join('\n'))
/** Every process below `pid` (itself included), from /proc. */
function tree (pid) {
  const children = new Map()
  for (const entry of fs.readdirSync('/proc').filter((e) => /^\d+$/.test(e))) {
    try {
      const stat = fs.readFileSync(`/proc/${entry}/stat`, 'utf8')
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1])
      children.set(ppid, [...(children.get(ppid) ?? []), Number(entry)])
    } catch {}
  }
  const out = []
  const walk = (p) => { out.push(p); for (const c of children.get(p) ?? []) walk(c) }
  walk(pid)
  return out
}
const rssKb = (pid) => {
  try { return Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))[1]) } catch { return 0 }
}
const command = (pid) => { try { return fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim() } catch { return '?' } }
const measure = (pids) => ({
  processes: pids.length,
  rssMb: +(pids.reduce((sum, p) => sum + rssKb(p), 0) / 1024).toFixed(1),
  commands: pids.map(command).reduce((tally, c) => ({ ...tally, [c]: (tally[c] ?? 0) + 1 }), {}),
})
const fleetSides = {}
{
  // Direct: each session spawns its own copy of every server.
  const open = []
  for (let i = 0; i < fleet; i++) {
    for (const [name, args] of Object.entries(servers)) {
      const transport = new StdioClientTransport({ command: 'node', args, env: { ...env, MEMORY_FILE_PATH: path.join(root, `memory-${i}.jsonl`) } })
      const client = new Client({ name: 'bench', version: '1' })
      await client.connect(transport)
      await client.callTool({ name: firstTool[name], arguments: {} })
      open.push({ client, transport })
    }
  }
  fleetSides.direct = measure(open.flatMap(({ transport }) => tree(transport.pid)))
  for (const s of open) await close(s)
}
{
  // Through skep: one relay per session, one daemon, one copy of each server.
  spawnSync(skep, ['up', '--config', fleetConfig], { env })
  const daemon = JSON.parse(spawnSync(skep, ['status', '--json', '--config', fleetConfig], { env, encoding: 'utf8' }).stdout).daemon.pid
  const open = []
  for (let i = 0; i < fleet; i++) {
    const transport = new StdioClientTransport({ command: skep, args: ['mcp', '--config', fleetConfig], env })
    const client = new Client({ name: 'bench', version: '1' })
    await client.connect(transport)
    for (const name of Object.keys(servers)) await client.callTool({ name: `${name}__${firstTool[name]}`, arguments: {} })
    open.push({ client, transport })
  }
  fleetSides.skep = measure([...tree(daemon), ...open.flatMap(({ transport }) => tree(transport.pid))])
  fleetSides.skepRelaysOnly = measure(open.flatMap(({ transport }) => tree(transport.pid)))
  for (const s of open) await close(s)
  spawnSync(skep, ['down', '--config', fleetConfig], { env })
}
fs.rmSync(root, { recursive: true, force: true })

const row = (side) => ({
  side,
  callP50Ms: +pct(lat[side], 50).toFixed(3),
  callP99Ms: +pct(lat[side], 99).toFixed(3),
  addedP50Ms: +(pct(lat[side], 50) - pct(lat.direct, 50)).toFixed(3),
  firstCallP50Ms: +pct(first[side], 50).toFixed(1),
})
console.log(JSON.stringify({ calls, rounds, sessions, rows: Object.keys(sides).map(row), fleet: { sessions: fleet, servers: 3, ...fleetSides } }, null, 1))
