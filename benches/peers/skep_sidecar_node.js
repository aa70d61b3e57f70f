// Scenario 6: Node driving heavy_agent.py through a spawned `skep serve`,
// with vscode-jsonrpc (LSP framing), as docs/protocol.md shows.
//
//   node skep_sidecar_node.js CALLS BATCHES SKEP TOML_FILE
//
// Prints {"metrics": {"call": [ns...], "batch": [ns...]}}.
'use strict';
const { spawn } = require('child_process');
const rpc = require('vscode-jsonrpc/node');
const { measure, run } = require('./node_timing');

run(async () => {
  const [calls, batches, skep, tomlFile] = process.argv.slice(2);
  const sidecar = spawn(skep, ['serve', '--config', tomlFile], { stdio: ['pipe', 'pipe', 'inherit'] });
  const connection = rpc.createMessageConnection(
    new rpc.StreamMessageReader(sidecar.stdout),
    new rpc.StreamMessageWriter(sidecar.stdin),
  );
  connection.listen();
  const call = (params) => connection.sendRequest('swarm/call', { role: 'heavy', method: 'echo', params });
  const metrics = await measure(call, Number(calls), Number(batches));
  await connection.sendRequest('shutdown');
  connection.dispose();
  await new Promise((resolve) => sidecar.on('exit', resolve));
  return { metrics };
});
