#!/usr/bin/env node
// Where an HTTP MCP call's time goes (docs/benchmarks.md, the MCP section):
// one `whoami` tool call at a time on an open session, sides alternating in
// rounds, in one run:
//   direct    the SDK client spawns state-server.mjs and talks stdio to it;
//   relay     the SDK client spawns `skep mcp` (the daemon's gateway);
//   http      the SDK client over Streamable HTTP to the daemon's gateway;
//   raw       a bare keep-alive node:http client, same gateway, same tool;
//   floor     the SDK client over HTTP to an in-process SDK server
//             (StreamableHTTPServerTransport, session mode, SSE answers,
//             the SDK's default), with no skep in it;
//   floorJson the same with the SDK server's JSON answers (enableJsonResponse).
// Per side: p50 and p99 in ms, the client's CPU per call (this process; the
// floor's server is in it too), the daemon's CPU per call, the answer's
// content type, and the TCP connections the server accepted during the
// timed calls (the floor counts its own; skep's gateway counts its in
// `skep status --json`, daemon.mcp.httpConnections).
// Usage (after `cd manager/tests/mcp-clients && npm ci` and a release build):
//   node benches/mcp_http_latency.mjs [--skep target/release/skep] [--calls 2000] [--rounds 5]
import { randomUUID } from 'node:crypto'
import fs from 'node:fs'
import http from 'node:http'
import os from 'node:os'
import path from 'node:path'
import { arg, defaultSkep, scratchDaemon, sdk, stateServer as server } from './mcp_scratch.mjs'

const { Client } = await sdk('client/index.js')
const { StdioClientTransport } = await sdk('client/stdio.js')
const { StreamableHTTPClientTransport } = await sdk('client/streamableHttp.js')
const { Server } = await sdk('server/index.js')
const { StreamableHTTPServerTransport } = await sdk('server/streamableHttp.js')
const { CallToolRequestSchema, ListToolsRequestSchema } = await sdk('types.js')

const skep = path.resolve(arg('skep', defaultSkep))
const calls = Number(arg('calls', 2000))
const rounds = Number(arg('rounds', 5))

const { root, config, env, run } = scratchDaemon(skep, 'skep-bench-http-')
const gateway = () => JSON.parse(run('status', '--json')).daemon

/** A minimal MCP server over the SDK's own Streamable HTTP transport, one `whoami` tool. */
async function floorServer (json) {
  const sessions = new Map()
  let counter = 0
  const make = () => {
    const s = new Server({ name: 'floor', version: '1' }, { capabilities: { tools: {} } })
    s.setRequestHandler(ListToolsRequestSchema, async () => ({ tools: [{ name: 'whoami', inputSchema: { type: 'object' } }] }))
    s.setRequestHandler(CallToolRequestSchema, async () => {
      counter += 1
      const who = { pid: process.pid, calls: counter }
      return { content: [{ type: 'text', text: JSON.stringify(who) }], structuredContent: who }
    })
    return s
  }
  const httpServer = http.createServer(async (req, res) => {
    const id = req.headers['mcp-session-id']
    let transport = id && sessions.get(id)
    if (!transport) {
      transport = new StreamableHTTPServerTransport({
        sessionIdGenerator: () => randomUUID(),
        enableJsonResponse: json,
        onsessioninitialized: (sid) => sessions.set(sid, transport),
      })
      await make().connect(transport)
    }
    await transport.handleRequest(req, res)
  })
  httpServer.connections = 0
  httpServer.on('connection', (socket) => { socket.setNoDelay(true); httpServer.connections += 1 })
  await new Promise((resolve) => httpServer.listen(0, '127.0.0.1', resolve))
  httpServer.url = new URL(`http://127.0.0.1:${httpServer.address().port}/mcp`)
  return httpServer
}

/** A bare keep-alive client: one POST per call, the answer read whole. */
function rawClient (url, token) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })
  let session
  let id = 0
  const post = (body) => new Promise((resolve, reject) => {
    const headers = { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json', Accept: 'application/json, text/event-stream', 'MCP-Protocol-Version': '2025-06-18' }
    if (session) headers['Mcp-Session-Id'] = session
    const req = http.request({ host: url.hostname, port: url.port, path: url.pathname, method: 'POST', agent, headers }, (res) => {
      let data = ''
      res.setEncoding('utf8')
      res.on('data', (c) => { data += c })
      res.on('end', () => resolve({ res, data }))
    })
    req.on('error', reject)
    req.end(JSON.stringify(body))
  })
  return {
    async connect () {
      const init = await post({ jsonrpc: '2.0', id: id++, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '1' } } })
      session = init.res.headers['mcp-session-id']
      await post({ jsonrpc: '2.0', method: 'notifications/initialized' })
    },
    async callTool ({ name, arguments: args }) {
      const { res, data } = await post({ jsonrpc: '2.0', id: id++, method: 'tools/call', params: { name, arguments: args } })
      this.contentType = res.headers['content-type']
      return data
    },
    async close () { agent.destroy() },
  }
}

/** The SDK client, and the content type of its answers (seen through its fetch). */
async function sdkClient (transportFor) {
  const client = new Client({ name: 'bench', version: '1' })
  const seen = {}
  const transport = transportFor(async (input, init) => {
    const response = await fetch(input, init)
    if (init?.method === 'POST') seen.contentType = response.headers.get('content-type')
    return response
  })
  await client.connect(transport)
  return {
    callTool: (p) => client.callTool(p),
    get contentType () { return seen.contentType ?? 'stdio' },
    async close () {
      if (transport.terminateSession) await transport.terminateSession()
      await client.close()
    },
  }
}

run('up')
const floors = { floor: await floorServer(false), floorJson: await floorServer(true) }
try {
  const status = gateway()
  const daemonPid = status.pid
  const url = new URL(status.mcp.http)
  const token = fs.readFileSync(status.mcp.token, 'utf8').trim()
  const httpTransport = (target, headers) => (fetchFn) => new StreamableHTTPClientTransport(target, { requestInit: { headers }, fetch: fetchFn })
  const sides = {
    direct: () => sdkClient(() => new StdioClientTransport({ command: 'node', args: [server] })),
    relay: () => sdkClient(() => new StdioClientTransport({ command: skep, args: ['mcp', '--config', config], env })),
    http: () => sdkClient(httpTransport(url, { Authorization: `Bearer ${token}` })),
    raw: async () => { const c = rawClient(url, token); await c.connect(); return c },
    floor: () => sdkClient(httpTransport(floors.floor.url, {})),
    floorJson: () => sdkClient(httpTransport(floors.floorJson.url, {})),
  }
  const tool = { direct: 'whoami', relay: 'state__whoami', http: 'state__whoami', raw: 'state__whoami', floor: 'whoami', floorJson: 'whoami' }
  const open = {}
  for (const side of Object.keys(sides)) open[side] = await sides[side]()
  for (const side of Object.keys(sides)) { // warm-up
    for (let i = 0; i < 200; i++) await open[side].callTool({ name: tool[side], arguments: {} })
  }
  const cpuMs = (pid) => {
    const fields = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')
    return (Number(fields[11]) + Number(fields[12])) * 10 // utime + stime, in clock ticks of 10 ms
  }
  const connections = (side) => {
    if (side === 'http' || side === 'raw') return gateway().mcp.httpConnections ?? NaN
    if (floors[side]) return floors[side].connections
    return 0
  }
  const figures = Object.fromEntries(Object.keys(sides).map((s) => [s, { lat: [], clientUs: 0, daemonUs: 0, connections: 0 }]))
  for (let r = 0; r < rounds; r++) {
    for (const side of Object.keys(sides)) {
      const f = figures[side]
      const n = calls / rounds
      const [conn0, daemon0, cpu0] = [connections(side), cpuMs(daemonPid), process.cpuUsage()]
      for (let i = 0; i < n; i++) {
        const t = process.hrtime.bigint()
        await open[side].callTool({ name: tool[side], arguments: {} })
        f.lat.push(Number(process.hrtime.bigint() - t) / 1e6)
      }
      const cpu = process.cpuUsage(cpu0)
      f.clientUs += cpu.user + cpu.system
      f.daemonUs += (cpuMs(daemonPid) - daemon0) * 1000
      // `skep status` itself is one connection to the control socket, not the HTTP front.
      f.connections += connections(side) - conn0
    }
  }
  const pct = (xs, p) => {
    const s = [...xs].sort((a, b) => a - b)
    return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]
  }
  const direct = pct(figures.direct.lat, 50)
  const rows = Object.entries(figures).map(([side, f]) => ({
    side,
    p50Ms: +pct(f.lat, 50).toFixed(3),
    p99Ms: +pct(f.lat, 99).toFixed(3),
    addedP50Ms: +(pct(f.lat, 50) - direct).toFixed(3),
    clientCpuUsPerCall: Math.round(f.clientUs / calls),
    daemonCpuUsPerCall: Math.round(f.daemonUs / calls),
    contentType: open[side].contentType,
    newConnections: f.connections,
  }))
  for (const side of Object.keys(sides)) await open[side].close()
  console.log(JSON.stringify({ calls, rounds, load: os.loadavg().map((l) => +l.toFixed(1)), rows }, null, 1))
} finally {
  for (const f of Object.values(floors)) f.close()
  run('down')
  fs.rmSync(root, { recursive: true, force: true })
  process.exit(0)
}
