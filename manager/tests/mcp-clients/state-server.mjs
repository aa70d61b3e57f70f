// A small MCP stdio server for the gateway's tests, built on the official SDK:
// it keeps per-process state (a counter and a key/value map), reports its
// pid, has a slow tool that reports progress and notices cancellation, and
// one that adds a tool and a prompt to its lists and announces both changes. It offers its
// memory as resources (one, and a template per key) and a prompt. With
// `--page-size N` every list is served N items a page, behind `nextCursor`
// (and a second resource, `state://pid`, so that list has two pages too).
import { Server } from '@modelcontextprotocol/sdk/server/index.js'
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js'
import {
  CallToolRequestSchema, GetPromptRequestSchema, ListPromptsRequestSchema, ListResourcesRequestSchema,
  ListResourceTemplatesRequestSchema, ListToolsRequestSchema, ReadResourceRequestSchema
} from '@modelcontextprotocol/sdk/types.js'

const state = { calls: 0, cancelled: 0, memory: {} }
const sizeAt = process.argv.indexOf('--page-size')
const pageSize = sizeAt > 0 ? Number(process.argv[sizeAt + 1]) : Infinity
/** One page of `items` under `field`, from the cursor (an offset) the client sent. */
const page = (field, items, request) => {
  const from = Number(request.params?.cursor ?? 0)
  const next = from + pageSize
  return { [field]: items.slice(from, next), ...(next < items.length ? { nextCursor: String(next) } : {}) }
}
const resources = [{ uri: 'state://memory', name: 'memory', mimeType: 'application/json' }]
if (pageSize !== Infinity) resources.push({ uri: 'state://pid', name: 'pid', mimeType: 'text/plain' })
const object = (properties = {}) => ({ type: 'object', properties })
const tools = [
  { name: 'whoami', description: 'This process: its pid and counters', inputSchema: object() },
  { name: 'remember', description: 'Keeps a value in this process', inputSchema: object({ key: { type: 'string' }, value: { type: 'string' } }) },
  { name: 'recall', description: 'A value this process keeps', inputSchema: object({ key: { type: 'string' } }) },
  { name: 'slow', description: 'Waits ms, reporting progress each step', inputSchema: object({ ms: { type: 'number' }, steps: { type: 'number' } }) },
  { name: 'announce', description: 'Adds a tool and a prompt named `tool`, and sends tools/ and prompts/list_changed', inputSchema: object({ tool: { type: 'string' } }) },
]

const server = new Server({ name: 'skep-test-state', version: '1.0.0' }, { capabilities: { tools: { listChanged: true }, resources: {}, prompts: { listChanged: true } } })
server.setRequestHandler(ListToolsRequestSchema, async (request) => page('tools', tools, request))
server.setRequestHandler(ListResourcesRequestSchema, async (request) => page('resources', resources, request))
server.setRequestHandler(ListResourceTemplatesRequestSchema, async () => ({
  resourceTemplates: [{ uriTemplate: 'state://memory/{key}', name: 'one key', mimeType: 'text/plain' }]
}))
server.setRequestHandler(ReadResourceRequestSchema, async (request) => {
  const uri = request.params.uri
  if (uri === 'state://memory') return { contents: [{ uri, mimeType: 'application/json', text: JSON.stringify(state.memory) }] }
  const key = uri.startsWith('state://memory/') ? uri.slice('state://memory/'.length) : undefined
  if (key === undefined || !(key in state.memory)) throw new Error(`no resource ${uri}`)
  return { contents: [{ uri, mimeType: 'text/plain', text: state.memory[key] }] }
})
const prompts = [{ name: 'greet', description: 'Greets someone', arguments: [{ name: 'who', required: true }] }]
server.setRequestHandler(ListPromptsRequestSchema, async (request) => page('prompts', prompts, request))
server.setRequestHandler(GetPromptRequestSchema, async (request) => ({
  messages: [{ role: 'user', content: { type: 'text', text: `hello ${request.params.arguments?.who} from ${process.pid}` } }]
}))
server.setRequestHandler(CallToolRequestSchema, async (request, extra) => {
  state.calls += 1
  const args = request.params.arguments ?? {}
  const text = (value) => ({ content: [{ type: 'text', text: JSON.stringify(value) }], structuredContent: value })
  switch (request.params.name) {
    case 'whoami':
      return text({ pid: process.pid, calls: state.calls, cancelled: state.cancelled })
    case 'remember':
      state.memory[args.key] = args.value
      return text({ pid: process.pid, kept: args.key })
    case 'recall':
      return text({ pid: process.pid, value: state.memory[args.key] ?? null })
    case 'slow': {
      const steps = args.steps ?? 1
      const token = request.params._meta?.progressToken
      for (let i = 1; i <= steps; i++) {
        const waited = await new Promise((resolve) => {
          const timer = setTimeout(() => resolve(true), (args.ms ?? 1000) / steps)
          extra.signal.addEventListener('abort', () => { clearTimeout(timer); resolve(false) }, { once: true })
        })
        if (!waited) {
          state.cancelled += 1
          throw new Error('cancelled')
        }
        if (token !== undefined) {
          await extra.sendNotification({ method: 'notifications/progress', params: { progressToken: token, progress: i, total: steps } })
        }
      }
      return text({ pid: process.pid, slept: args.ms })
    }
    case 'announce':
      tools.push({ name: args.tool, description: 'Added by announce', inputSchema: object() })
      prompts.push({ name: args.tool, description: 'Added by announce' })
      await server.sendToolListChanged()
      await server.sendPromptListChanged()
      return text({ pid: process.pid, added: args.tool })
    default:
      if (tools.some((t) => t.name === request.params.name)) return text({ pid: process.pid, added: request.params.name })
      throw new Error(`no tool ${request.params.name}`)
  }
})
await server.connect(new StdioServerTransport())
// Exit on stdin EOF, as skep's agents must.
process.stdin.on('end', () => process.exit(0))
