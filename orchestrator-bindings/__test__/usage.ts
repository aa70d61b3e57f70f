// How TypeScript code uses the package; type-checked by types.test.js with
// `tsc --noEmit`, which proves the committed index.d.ts right. The lines
// expected to fail show that the types are not `any`.
import { Swarm, type CallProgress, type SkepError, type SwarmEvent, type Settled } from 'skep'

interface Review {
  comments: string[]
}

export async function main(signal: AbortSignal): Promise<void> {
  const swarm: Swarm = await Swarm.fromFile('skep.toml')
  const alsoInline = await Swarm.fromToml('[roles.echo]\ncommand = ["node", "echo.mjs"]\n')
  const demo = await Swarm.demo()
  const shared: Swarm = await Swarm.connect({ config: 'skep.toml', autoStart: true, skep: '/usr/bin/skep' })
  const bySocket = await Swarm.connect({ socket: '/run/user/1000/skep/daemon-0123.sock' })
  await Promise.all([shared.close(), bySocket.close()])

  const review = await swarm.call<Review>('reviewer', 'review', { path: 'src' }, { timeoutMs: 5000, signal })
  const progressed = await swarm.call('reviewer', 'review', { path: 'src' }, {
    onProgress: ({ fraction, message }: CallProgress) => console.log(fraction?.toFixed(2), message?.length),
  })
  // @ts-expect-error onProgress receives a CallProgress, not a string
  await swarm.call('reviewer', 'review', {}, { onProgress: (p: string) => p })
  const firstComment: string | undefined = review.comments[0]

  const all: Settled[] = await swarm.fanout('reviewer', 'review', [{ path: 'a' }, { path: 'b' }], { maxParallel: 2 })
  for (const outcome of all) {
    if ('ok' in outcome) console.log(outcome.ok)
    else console.log(outcome.error.code, outcome.error.message)
  }
  const first = await swarm.race([{ role: 'a', method: 'm', params: { x: 1 } }, { role: 'b', method: 'm' }])
  const winner: number = first.index
  const replies = await swarm.broadcast('reviewer', 'reload', {})
  const agentIds: string[] = replies.map((r) => r.agent)

  const roleNames: string[] = swarm.roles().map((r) => r.name)
  const pids: number[] = (await swarm.agents()).map((a) => a.pid)
  const p99: number = (await swarm.stats()).roles[0].latencyUs.p99
  const costs = (await swarm.agents()).map((a) => [a.rssBytes ?? 0, a.cpuPercent ?? 0, a.recycled ?? ''] as const)
  const leaked: number = (await swarm.stats()).roles[0].recycled.memory

  const off: () => void = swarm.onEvent((event: SwarmEvent) => {
    if (event.type === 'callFinished') console.log(event.agent, event.durationUs, event.outcome)
    if (event.type === 'agentRecycled' && event.cause === 'memory') console.log(event.agent, event.reason)
  })
  off()

  try {
    await demo.call('demo', 'echo', ['hi'])
  } catch (e) {
    const error = e as SkepError
    if (error.code === 'SKEP_TIMEOUT' || error.code === 'SKEP_CIRCUIT_OPEN') console.log(error.rpcCode, error.data)
  }
  console.log(firstComment, winner, agentIds, roleNames, pids, p99, costs, leaked)

  // @ts-expect-error: a role is a string
  await swarm.call(42, 'review')
  // @ts-expect-error: timeoutMs is a number of milliseconds
  await swarm.call('reviewer', 'review', {}, { timeoutMs: '5s' })
  // @ts-expect-error: no such code
  const bad: SkepError['code'] = 'SKEP_OOPS'
  console.log(bad)

  const record = await swarm.runWorkflow('review.toml', {
    jobs: 4,
    onProgress: (p) => console.log(`${p.done}/${p.total}`, p.running.join(', ')),
    signal,
  })
  if (!record.ok) console.log(record.steps.filter((s) => s.outcome === 'failed').map((s) => s.error))
  console.log(record.analysis.parallelEfficiency, record.analysis.insights)
  // Why each step ran, what it used and cost.
  for (const s of record.steps) {
    if (s.why?.decision === 'hit') console.log(s.id, 'from run', s.why.run)
    if (s.why?.decision === 'miss') console.log(s.id, s.why.because.map((b) => (b.kind === 'input' ? b.path : b.kind)))
    console.log(s.resources?.cpuUserMs, s.resources?.peakRssBytes, s.usage?.inputTokens, s.cost, s.savedCost)
  }
  const t = record.analysis.totals
  console.log(t.cpuMs, t.cost ?? 0, t.savedCost ?? 0, record.analysis.regressions.map((r) => r.runs))

  await Promise.all([swarm.close(), alsoInline.close(), demo.close()])
}
