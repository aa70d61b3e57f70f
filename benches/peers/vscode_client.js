// Scenario 1's vscode-jsonrpc side: a Node client talks to vscode_server.js
// (a Node child) over pipes, as an LSP client would.
//
//   node vscode_client.js ROUND_TRIPS BATCHES
//
// Times ROUND_TRIPS sequential echo calls of a 100-byte object, then BATCHES
// batches of 1,024 calls with 128 in flight. Untimed warm-up first. Prints
// {"metrics": {"rt": [ns...], "batch": [ns...]}}.
'use strict';
const { spawn } = require('child_process');
const path = require('path');
const rpc = require('vscode-jsonrpc/node');

const WINDOW = 128;
const BATCH = 1024;
const PARAMS = { text: 'x'.repeat(89) }; // 100 bytes of JSON

async function pipelined(connection, calls) {
  let next = 0;
  async function lane() {
    while (next < calls) {
      next += 1;
      await connection.sendRequest('echo', PARAMS);
    }
  }
  await Promise.all(Array.from({ length: WINDOW }, lane));
}

async function main() {
  const [roundTrips, batches] = process.argv.slice(2).map(Number);
  const child = spawn(process.execPath, [path.join(__dirname, 'vscode_server.js')], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const connection = rpc.createMessageConnection(
    new rpc.StreamMessageReader(child.stdout),
    new rpc.StreamMessageWriter(child.stdin),
  );
  connection.listen();
  for (let i = 0; i < 200; i++) await connection.sendRequest('echo', PARAMS);
  await pipelined(connection, BATCH);

  const rt = [];
  for (let i = 0; i < roundTrips; i++) {
    const t = process.hrtime.bigint();
    const reply = await connection.sendRequest('echo', PARAMS);
    rt.push(Number(process.hrtime.bigint() - t));
    if (reply.text !== PARAMS.text) throw new Error('echo changed its params');
  }
  const batch = [];
  for (let i = 0; i < batches; i++) {
    const t = process.hrtime.bigint();
    await pipelined(connection, BATCH);
    batch.push(Number(process.hrtime.bigint() - t));
  }
  connection.dispose();
  child.stdin.end();
  process.stdout.write(JSON.stringify({ metrics: { rt, batch } }) + '\n');
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
