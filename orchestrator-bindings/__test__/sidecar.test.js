// The Node example of docs/protocol.md (skep serve over vscode-jsonrpc) runs
// exactly as written there and prints what its comments say.
'use strict'
const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const path = require('node:path')
const { spawnSync } = require('node:child_process')
const { repo, skepBinary } = require('./helpers')

/** The ```js block under the heading "From Node" in docs/protocol.md. */
function example() {
  const doc = fs.readFileSync(path.join(repo, 'docs', 'protocol.md'), 'utf8')
  const section = doc.slice(doc.indexOf('## From Node'))
  const match = section.match(/```js\n([\s\S]*?)```/)
  assert.ok(match, 'docs/protocol.md has no ```js block under "## From Node"')
  return match[1]
}

test('the vscode-jsonrpc sidecar example in docs/protocol.md', () => {
  // Written beside node_modules so that require('vscode-jsonrpc/node') resolves.
  const file = path.join(__dirname, '..', '.sidecar-example.generated.js')
  fs.writeFileSync(file, example())
  try {
    const run = spawnSync(process.execPath, [file], {
      env: { ...process.env, SKEP_BIN: skepBinary() },
      encoding: 'utf8',
      timeout: 60_000,
    })
    assert.equal(run.status, 0, `exit ${run.status} ${run.signal ?? ''}\n${run.stdout}\n${run.stderr}`)
    assert.match(run.stdout, /wordcount: \{ words: 4 \}/)
    assert.match(run.stdout, /cancelled: true/)
    assert.match(run.stdout, /events: \[ 'wordcount: "ok"', 'sleep: "cancelled"' \]/)
  } finally {
    fs.rmSync(file, { force: true })
  }
})
