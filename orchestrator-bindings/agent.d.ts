// Types of `skep/agent` (agent.js): a warm skep agent in five lines.

/** What a method receives besides its params. */
export interface CallContext {
  /** The request's id, as the caller wrote it. */
  readonly id: number | string | null
  /** Aborted when the caller gives up (`$/cancelRequest` or `notifications/cancelled`). */
  readonly signal: AbortSignal
  /** Tells the caller how far this call has got: `fraction` in [0, 1] and/or a message. */
  progress(fraction?: number | null, message?: string): void
}

/** Options of `agent.method`. */
export interface MethodOptions {
  /**
   * The params' names in positional order, `'name?'` when optional. When given,
   * an array of params is mapped onto them and a mismatch is answered -32602
   * naming what is missing or unexpected; otherwise params arrive as sent.
   */
  params?: string[]
}

/** A method: its result (or a promise of it) is the call's result. */
export type Method<P = any, R = unknown> = (params: P, context: CallContext) => R | Promise<R>

/** A deliberate JSON-RPC error: the caller receives code, message and data unchanged. */
export declare class AgentError extends Error {
  constructor(code: number, message: string, data?: unknown)
  readonly code: number
  readonly data?: unknown
}

/** A skep agent: register methods with `agent.method(name, fn)`, then call `agent.run()`. */
export declare class Agent {
  /** `name` answers `initialize` (default: the script's file name). */
  constructor(options?: { name?: string })
  static readonly Error: typeof AgentError
  readonly name: string
  /** Registers a method; returns the agent, so calls chain. */
  method<P = any, R = unknown>(name: string, fn: Method<P, R>, options?: MethodOptions): this
  /** The current call's AbortSignal (only while a method runs). */
  readonly signal: AbortSignal
  /** True once the caller has given up on the current call (false outside one). */
  cancelled(): boolean
  /** Progress of the current call (only while a method runs). */
  progress(fraction?: number | null, message?: string): void
  /**
   * Serves stdin until it ends and every call has answered, with stdout kept
   * for the protocol (anything else written to it goes to stderr); then exits
   * the process with status 0, unless `exit: false`.
   */
  run(options?: { exit?: boolean }): Promise<void>
}

/** The notification an agent sends to report a call's progress: `{ id, fraction?, message? }`. */
export declare const PROGRESS_METHOD: '$/progress'
