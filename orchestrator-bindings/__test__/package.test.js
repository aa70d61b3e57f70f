// A newcomer's path: `npm pack` the built package, install the tarball into a
// fresh project, call the demo swarm from JavaScript, and type-check
// TypeScript against the installed types.
'use strict'
const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { execFileSync } = require('node:child_process')

const pkg = path.resolve(__dirname, '..')
const npm = (args, cwd) =>
  execFileSync('npm', [...args, '--no-audit', '--no-fund', '--loglevel=error'], { cwd, encoding: 'utf8' })

test('the packed package installs into a fresh project and works, types included', (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'skep-newcomer-'))
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }))

  const tarball = npm(['pack', '--pack-destination', dir], pkg).trim().split('\n').pop()
  fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: 'newcomer', private: true }))
  npm(['install', '--offline', path.join(dir, tarball)], dir)

  fs.writeFileSync(
    path.join(dir, 'main.js'),
    `const { Swarm } = require('skep')
     Swarm.demo().then(async (swarm) => {
       const result = await swarm.call('demo', 'wordcount', { text: 'it just works' })
       await swarm.close()
       console.log(JSON.stringify(result))
     })`,
  )
  assert.equal(execFileSync(process.execPath, ['main.js'], { cwd: dir, encoding: 'utf8' }).trim(), '{"words":3}')

  fs.writeFileSync(
    path.join(dir, 'main.ts'),
    `import { Swarm, type SkepError } from 'skep'
     export async function run(): Promise<number> {
       const swarm = await Swarm.demo()
       try {
         return (await swarm.call<{ words: number }>('demo', 'wordcount', { text: 'a b' })).words
       } catch (e) {
         throw new Error((e as SkepError).code)
       } finally {
         await swarm.close()
       }
     }`,
  )
  const tsc = require.resolve('typescript/bin/tsc')
  const args = ['--noEmit', '--strict', '--module', 'node16', '--moduleResolution', 'node16', '--types', 'node', 'main.ts']
  // @types/node comes from this package's dev dependencies, as a project would have its own.
  fs.symlinkSync(path.join(pkg, 'node_modules', '@types'), path.join(dir, 'node_modules', '@types'))
  execFileSync(process.execPath, [tsc, ...args], { cwd: dir, encoding: 'utf8' })
})
