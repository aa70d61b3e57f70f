// The official MCP TypeScript SDK's client against skep's gateway, for
// manager/tests/mcp.rs. It runs one scenario and prints what it saw as one
// JSON line; the Rust test judges it. Usage:
//   node ts-client.mjs SCENARIO stdio SKEP CONFIG
//   node ts-client.mjs SCENARIO http URL TOKEN
// stdio servers are spawned the SDK's way: with its default environment only
// (HOME, LOGNAME, PATH, SHELL, TERM, USER), as MCP clients do.
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js'
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js'
import { PromptListChangedNotificationSchema, ToolListChangedNotificationSchema } from '@modelcontextprotocol/sdk/types.js'

const [scenario, transport, target, extra] = process.argv.slice(2)
const DEADLINE_MS = 30000

async function connect () {
  const client = new Client({ name: 'skep-test', version: '1.0.0' })
  const t = transport === 'stdio'
    ? new StdioClientTransport({ command: target, args: ['mcp', '--config', extra], stderr: 'inherit' })
    : new StreamableHTTPClientTransport(new URL(target), { requestInit: { headers: { Authorization: `Bearer ${extra}` } } })
  await client.connect(t)
  // A well-behaved HTTP client ends its session (DELETE) rather than leaving it to time out.
  client.end = async () => {
    if (transport !== 'stdio') await t.terminateSession()
    await client.close()
  }
  return client
}

const text = (result) => result.content?.map((c) => c.text ?? '').join('') ?? ''
const json = (result) => result.structuredContent ?? JSON.parse(text(result))
const call = (client, name, args = {}, options) => client.callTool({ name, arguments: args }, undefined, options)

/** Polls `check` until it returns a truthy value or the deadline passes. */
async function until (what, check) {
  const end = Date.now() + DEADLINE_MS
  for (;;) {
    const value = await check()
    if (value) return value
    if (Date.now() > end) throw new Error(`gave up waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

async function main () {
  const out = {}
  if (scenario === 'main') {
    const a = await connect()
    out.server = a.getServerVersion()
    out.tools = (await a.listTools()).tools.map((t) => t.name).sort()
    out.whoA = json(await call(a, 'state__whoami'))
    out.fs = text(await call(a, 'fs__list_allowed_directories'))
    out.memory = json(await call(a, 'memory__read_graph'))
    out.words = json(await call(a, 'words__count', { text: 'one two three' }))
    const b = await connect()
    out.whoB = json(await call(b, 'state__whoami'))
    await call(a, 'state__remember', { key: 'k', value: 'from-a' })
    out.recallB = json(await call(b, 'state__recall', { key: 'k' }))
    // Progress: notifications/progress for this call, relayed to this session.
    out.progress = []
    await call(a, 'state__slow', { ms: 300, steps: 3 }, { onprogress: (p) => out.progress.push(p.progress) })
    // Cancellation: the upstream call notices once the client aborts.
    const before = json(await call(b, 'state__whoami'))
    const abort = new AbortController()
    const slow = call(a, 'state__slow', { ms: 60000 }, { signal: abort.signal }).then(() => 'finished', (e) => String(e))
    await until('the slow call to reach the server', async () => json(await call(b, 'state__whoami')).calls >= before.calls + 2)
    abort.abort('test')
    out.aborted = await slow
    out.cancelledUpstream = await until('the server to see the cancel', async () => json(await call(b, 'state__whoami')).cancelled > before.cancelled)
    // A server killed mid-call: a tool error naming it, then a fresh server.
    const seen = json(await call(b, 'state__whoami'))
    const doomed = call(a, 'state__slow', { ms: 60000 })
    await until('the doomed call to reach the server', async () => json(await call(b, 'state__whoami')).calls >= seen.calls + 2)
    process.kill(seen.pid, 'SIGKILL')
    const killed = await doomed
    out.killed = { isError: killed.isError === true, text: text(killed) }
    out.recovered = await until('a fresh state server', async () => {
      const r = await call(b, 'state__whoami')
      return r.isError ? null : json(r)
    })
    out.unknownTool = await call(a, 'nobody__nothing').then((r) => ({ isError: r.isError, text: text(r) }), (e) => ({ error: e.code }))
    await a.end()
    await b.end()
  } else if (scenario === 'listchanged') {
    // A server announces a new tool: every session is told, and lists it.
    const a = await connect()
    const b = await connect()
    const told = { a: 0, b: 0 }
    a.setNotificationHandler(ToolListChangedNotificationSchema, () => { told.a += 1 })
    b.setNotificationHandler(ToolListChangedNotificationSchema, () => { told.b += 1 })
    const toldPrompts = { a: 0, b: 0 }
    a.setNotificationHandler(PromptListChangedNotificationSchema, () => { toldPrompts.a += 1 })
    b.setNotificationHandler(PromptListChangedNotificationSchema, () => { toldPrompts.b += 1 })
    const statePrompts = async (c) => (await c.listPrompts()).prompts.map((p) => p.name).filter((n) => n.startsWith('state__')).sort()
    out.promptsBefore = await statePrompts(b)
    const stateTools = async (c) => (await c.listTools()).tools.map((t) => t.name).filter((n) => n.startsWith('state__')).sort()
    out.before = await stateTools(b)
    out.capability = a.getServerCapabilities()?.tools?.listChanged === true
    out.promptsCapability = a.getServerCapabilities()?.prompts?.listChanged === true
    await call(a, 'state__announce', { tool: 'fresh' })
    await until('both sessions to be told the list changed', async () => told.a > 0 && told.b > 0)
    out.after = await stateTools(b)
    out.freshCall = json(await call(b, 'state__fresh')).added
    out.told = told
    await until('both sessions to be told the prompts changed', async () => toldPrompts.a > 0 && toldPrompts.b > 0)
    out.promptsAfter = await statePrompts(b)
    out.toldPrompts = toldPrompts
    await a.end()
    await b.end()
  } else if (scenario === 'reload') {
    // stdio only: a role added to the config and reloaded reaches the open session.
    const a = await connect()
    let told = 0
    a.setNotificationHandler(ToolListChangedNotificationSchema, () => { told += 1 })
    const names = async () => (await a.listTools()).tools.map((t) => t.name)
    out.before = (await names()).includes('extra__count')
    fs.appendFileSync(extra, `\n[roles.extra]\ncommand = ["${target}", "agent", "demo"]\n[[roles.extra.tools]]\nname = "count"\nmethod = "wordcount"\ninput_schema = { type = "object" }\n`)
    const reloaded = spawnSync(target, ['reload', '--config', extra], { encoding: 'utf8' })
    if (reloaded.status !== 0) throw new Error(`skep reload: ${reloaded.stderr}`)
    await until('the session to be told the list changed', async () => told > 0)
    out.after = (await names()).includes('extra__count')
    out.told = told
    await a.end()
  } else if (scenario === 'resources') {
    // Resources, templates and prompts of the servers, merged and mapped back.
    const a = await connect()
    out.capabilities = a.getServerCapabilities()
    out.resources = (await a.listResources()).resources.map((r) => r.uri).sort()
    out.templates = (await a.listResourceTemplates()).resourceTemplates.map((t) => t.uriTemplate).sort()
    await call(a, 'state__remember', { key: 'k', value: 'kept' })
    const pid = json(await call(a, 'state__whoami')).pid
    const whole = (await a.readResource({ uri: 'skep://state/state://memory' })).contents[0]
    out.whole = { uri: whole.uri, memory: JSON.parse(whole.text) }
    const one = (await a.readResource({ uri: 'skep://state/state://memory/k' })).contents[0]
    out.one = { uri: one.uri, text: one.text }
    const graph = (await a.readResource({ uri: 'skep://memory/memory://knowledge-graph' })).contents[0]
    out.graph = { uri: graph.uri, entities: JSON.parse(graph.text).entities }
    const failed = (uri) => a.readResource({ uri }).then(() => 'answered', (e) => e.code)
    out.unknownRole = await failed('skep://nobody/x://y')
    out.foreign = await failed('state://memory')
    out.missing = await failed('skep://state/state://memory/absent')
    out.prompts = (await a.listPrompts()).prompts.map((p) => p.name).sort()
    const prompt = await a.getPrompt({ name: 'state__greet', arguments: { who: 'ann' } })
    out.prompt = prompt.messages[0].content.text === `hello ann from ${pid}`
    out.unknownPrompt = await a.getPrompt({ name: 'nobody__greet' }).then(() => 'answered', (e) => e.code)
    await a.end()
  } else if (scenario === 'disconnect') {
    // A session that goes away with a call in flight: the upstream call is
    // cancelled. stdio: the client closes the relay (its process ends);
    // http: the client ends its session (DELETE) without cancelling first.
    const b = await connect()
    const before = json(await call(b, 'state__whoami'))
    const a = await connect()
    const slow = call(a, 'state__slow', { ms: 60000 }).then(() => 'finished', (e) => String(e))
    await until('the slow call to reach the server', async () => json(await call(b, 'state__whoami')).calls >= before.calls + 2)
    if (transport === 'stdio') await a.close()
    else await a.end()
    out.slow = await slow
    const seen = await until('the server to see the cancel', async () => {
      const now = json(await call(b, 'state__whoami'))
      return now.cancelled > before.cancelled ? now : null
    })
    out.cancelled = seen.cancelled - before.cancelled
    out.samePid = seen.pid === before.pid
    await b.end()
  } else if (scenario === 'sessions') {
    out.pids = []
    for (let i = 0; i < 10; i++) {
      const c = await connect()
      out.pids.push(json(await call(c, 'state__whoami')).pid)
      await c.end()
    }
  } else if (scenario === 'isolation') {
    const a = await connect()
    const b = await connect()
    await call(a, 'solo__remember', { key: 'k', value: 'only-a' })
    out.pidA = json(await call(a, 'solo__whoami')).pid
    out.pidB = json(await call(b, 'solo__whoami')).pid
    out.recallA = json(await call(a, 'solo__recall', { key: 'k' })).value
    out.recallB = json(await call(b, 'solo__recall', { key: 'k' })).value
    await a.end()
    await b.end()
  } else if (scenario === 'paged') {
    // Role `paged` serves its lists a page at a time: the gateway's lists hold every page.
    const a = await connect()
    const mine = (names) => names.filter((n) => n.startsWith('paged__') || n.startsWith('skep://paged/')).sort()
    const tools = await a.listTools()
    out.tools = mine(tools.tools.map((t) => t.name))
    out.toolsCursor = tools.nextCursor ?? null
    out.resources = mine((await a.listResources()).resources.map((r) => r.uri))
    await call(a, 'paged__announce', { tool: 'fresh' })
    out.prompts = mine((await a.listPrompts()).prompts.map((p) => p.name))
    out.call = json(await call(a, 'paged__fresh')).added
    await a.end()
  } else if (scenario === 'observed') {
    // Two sessions open, each holding its own share=session agent: what
    // `skep stats` (SKEP_BIN, SKEP_CONFIG) shows of them, then after they end.
    const stats = () => {
      const run = spawnSync(process.env.SKEP_BIN, ['stats', '--json', '--config', process.env.SKEP_CONFIG], { encoding: 'utf8' })
      if (run.status !== 0) throw new Error(`skep stats: ${run.stderr}`)
      return JSON.parse(run.stdout).stats
    }
    const a = await connect()
    const b = await connect()
    out.soloA = json(await call(a, 'solo__whoami')).pid
    out.soloB = json(await call(b, 'solo__whoami')).pid
    out.stateA = json(await call(a, 'state__whoami')).pid
    out.ids = [a, b].map((c) => c.transport?.sessionId ?? null)
    out.open = stats().mcp
    out.rendered = spawnSync(process.env.SKEP_BIN, ['stats', '--config', process.env.SKEP_CONFIG], { encoding: 'utf8' }).stdout
    out.status = spawnSync(process.env.SKEP_BIN, ['status', '--config', process.env.SKEP_CONFIG], { encoding: 'utf8' }).stdout
    await a.end()
    await b.end()
    out.closed = await until('the ended sessions to leave the stats', async () => {
      const mcp = stats().mcp
      return mcp.open.length === 0 ? mcp : null
    })
  } else {
    throw new Error(`unknown scenario ${scenario}`)
  }
  process.stdout.write(JSON.stringify(out) + '\n')
}

main().then(() => process.exit(0), (e) => {
  process.stderr.write(`ts-client: ${e.stack ?? e}\n`)
  process.exit(1)
})
