// The committed index.d.ts is right: a TypeScript program using every part
// of the API type-checks with `tsc --noEmit`, and misuse fails to.
'use strict'
const test = require('node:test')
const assert = require('node:assert/strict')
const { spawnSync } = require('node:child_process')
const path = require('node:path')

test('usage.ts type-checks against index.d.ts', () => {
  const tsc = require.resolve('typescript/bin/tsc')
  const result = spawnSync(process.execPath, [tsc, '--noEmit', '-p', path.join(__dirname, 'tsconfig.json')], {
    encoding: 'utf8',
  })
  assert.equal(result.status, 0, `tsc failed:\n${result.stdout}${result.stderr}`)
})
