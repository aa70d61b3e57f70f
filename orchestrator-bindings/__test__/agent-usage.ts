// How TypeScript code writes an agent with skep/agent; type-checked by
// types.test.js with `tsc --noEmit`, which proves agent.d.ts right. The lines
// expected to fail show that the types are not `any`.
import { Agent, AgentError, type CallContext } from 'skep/agent'

const agent = new Agent({ name: 'reviewer' })

agent
  .method<{ path: string; strict?: boolean }, { path: string; ok: boolean }>(
    'review',
    async ({ path, strict = false }, { signal, progress }: CallContext) => {
      progress(0.5, 'half way')
      if (signal.aborted) throw new AgentError(-32050, 'gave up', { path })
      return { path, ok: !strict }
    },
    { params: ['path', 'strict?'] },
  )
  .method('count', () => {
    agent.progress(null, 'counting')
    return agent.cancelled() ? 0 : 1
  })

export const done: Promise<void> = agent.run({ exit: false })
export const code: number = new Agent.Error(-32050, 'x').code

// @ts-expect-error a method needs a name
agent.method(() => 1)
// @ts-expect-error progress takes a fraction, not a string
agent.progress('half')
// @ts-expect-error the method's declared result type is checked
agent.method<{ a: number }, string>('typed', ({ a }) => a)
