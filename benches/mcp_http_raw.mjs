#!/usr/bin/env node
// Where the HTTP front's time goes (docs/benchmarks.md): p50 in ms of a
// tools/call and a ping, on one session, sent by a bare keep-alive
// node:http client (raw) and by the official SDK's client (sdk), one at a
// time, with the content type the gateway answered.
// Usage: node benches/mcp_http_raw.mjs [SKEP (target/release/skep)] [N (1000)]
import http from 'node:http'
import fs from 'node:fs'
import path from 'node:path'
import { defaultSkep, scratchDaemon, sdk } from './mcp_scratch.mjs'
const { Client } = await sdk('client/index.js')
const { StreamableHTTPClientTransport } = await sdk('client/streamableHttp.js')
const skep = path.resolve(process.argv[2] ?? defaultSkep)
const N = Number(process.argv[3] ?? 1000)
const { root, run } = scratchDaemon(skep, 'skep-raw-')
run('up')
try {
const st = JSON.parse(run('status', '--json')).daemon.mcp
const url = new URL(st.http); const token = fs.readFileSync(st.token, 'utf8').trim()
const pct = (xs, p) => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(p / 100 * s.length)] }
const agent = new http.Agent({ keepAlive: true })
function post (body, session) {
  return new Promise((resolve, reject) => {
    const headers = { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json', Accept: 'application/json, text/event-stream', 'MCP-Protocol-Version': '2025-06-18' }
    if (session) headers['Mcp-Session-Id'] = session
    const req = http.request({ host: url.hostname, port: url.port, path: '/mcp', method: 'POST', agent, headers, noDelay: true }, (res) => {
      let data = ''; res.setEncoding('utf8'); res.on('data', (c) => { data += c }); res.on('end', () => resolve({ res, data }))
    })
    req.on('error', reject); req.end(JSON.stringify(body))
  })
}
const init = await post({ jsonrpc: '2.0', id: 0, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '1' } } })
const session = init.res.headers['mcp-session-id']
await post({ jsonrpc: '2.0', method: 'notifications/initialized' }, session)
const time = async (f) => { const xs = []; for (let i = 0; i < N; i++) { const t = process.hrtime.bigint(); await f(i); xs.push(Number(process.hrtime.bigint() - t) / 1e6) } return xs }
for (let i = 0; i < 100; i++) await post({ jsonrpc: '2.0', id: i + 1, method: 'tools/call', params: { name: 'state__whoami', arguments: {} } }, session)
const rawCall = await time((i) => post({ jsonrpc: '2.0', id: 1000 + i, method: 'tools/call', params: { name: 'state__whoami', arguments: {} } }, session))
const rawPing = await time((i) => post({ jsonrpc: '2.0', id: 5000 + i, method: 'ping' }, session))
const c = new Client({ name: 'b', version: '1' }); const t = new StreamableHTTPClientTransport(url, { requestInit: { headers: { Authorization: `Bearer ${token}` } } })
await c.connect(t)
for (let i = 0; i < 100; i++) await c.callTool({ name: 'state__whoami', arguments: {} })
const sdkCall = await time(() => c.callTool({ name: 'state__whoami', arguments: {} }))
const sdkPing = await time(() => c.ping())
const sample = await post({ jsonrpc: '2.0', id: 9, method: 'ping' }, session)
console.log(JSON.stringify({ rawCall: pct(rawCall, 50), rawPing: pct(rawPing, 50), sdkCall: pct(sdkCall, 50), sdkPing: pct(sdkPing, 50), ctype: sample.res.headers['content-type'], body: sample.data.slice(0, 200) }))
await t.terminateSession(); await c.close()
} finally { run('down'); fs.rmSync(root, { recursive: true, force: true }) }
