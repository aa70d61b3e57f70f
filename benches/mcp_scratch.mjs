// What the MCP gateway's benches share: the official SDK installed under
// manager/tests/mcp-clients (`npm ci` there first), their `--name value`
// flags, and a daemon of their own, in a scratch directory, whose one MCP
// role is the test state server (state-server.mjs) behind HTTP on a free port.
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

export const here = path.dirname(fileURLToPath(import.meta.url))
export const clients = path.join(here, '..', 'manager', 'tests', 'mcp-clients')
/** A module of the SDK, by its path under dist/esm. */
export const sdk = (p) => import(path.join(clients, 'node_modules', '@modelcontextprotocol', 'sdk', 'dist', 'esm', p))
/** The MCP server every side of the benches calls. */
export const stateServer = path.join(clients, 'state-server.mjs')
/** The release binary unless `--skep PATH` is given. */
export const defaultSkep = path.join(here, '..', 'target', 'release', 'skep')

/** The value after `--name` on the command line, else `fallback`. */
export function arg (name, fallback) {
  const i = process.argv.indexOf(`--${name}`)
  return i > 0 ? process.argv[i + 1] : fallback
}

/**
 * A scratch directory `root` (private runtime and state dirs, so the daemon
 * is this bench's own), its skep.toml `config`, the environment `env` that
 * points skep there, and `run(...args)`: `skep ARGS --config config`, its
 * stdout, or a throw with its stderr.
 */
export function scratchDaemon (skep, prefix) {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), prefix))
  fs.mkdirSync(path.join(root, 'run'), { mode: 0o700 })
  const config = path.join(root, 'skep.toml')
  fs.writeFileSync(config, `[mcp]\nlisten = "127.0.0.1:0"\n\n[roles.state]\ncommand = ["node", "${stateServer}"]\nhandshake = "mcp"\nmin_warm = 1\nmax_agents = 1\nconcurrency = 4\n`)
  const env = { ...process.env, XDG_RUNTIME_DIR: path.join(root, 'run'), XDG_STATE_HOME: path.join(root, 'state'), HOME: process.env.HOME ?? root }
  const run = (...args) => {
    const r = spawnSync(skep, [...args, '--config', config], { env, encoding: 'utf8' })
    if (r.status !== 0) throw new Error(`skep ${args.join(' ')}: ${r.stderr}`)
    return r.stdout
  }
  return { root, config, env, run }
}
