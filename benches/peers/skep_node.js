// skep's Node package driving heavy_agent.py, for scenarios 2 and 6.
//
//   node skep_node.js CALLS TOML_FILE
//
// Written against the package's API (`Swarm.fromToml`, `swarm.call(role,
// method, params)`, `swarm.close()`). When the package is not built
// (orchestrator-bindings/ missing or without its .node file), prints
// {"skipped": reason} and exits 0, so the runner reports the row as skipped.
// Otherwise times CALLS sequential echo calls of a 100-byte object after one
// untimed call, and prints {"metrics": {"call": [ns...]}}.
'use strict';
const fs = require('fs');
const path = require('path');

const PARAMS = { text: 'x'.repeat(89) };
const PACKAGE = path.resolve(__dirname, '..', '..', 'orchestrator-bindings');

function built() {
  if (!fs.existsSync(PACKAGE)) return `${PACKAGE} does not exist (the Node package has not landed)`;
  if (!fs.readdirSync(PACKAGE).some((f) => f.endsWith('.node'))) {
    return `no .node file in ${PACKAGE}: build the Node package first`;
  }
  return null;
}

async function main() {
  const missing = built();
  if (missing) {
    process.stdout.write(JSON.stringify({ skipped: missing }) + '\n');
    return;
  }
  const { Swarm } = require(PACKAGE);
  const [calls, tomlFile] = [Number(process.argv[2]), process.argv[3]];
  const swarm = await Swarm.fromToml(fs.readFileSync(tomlFile, 'utf8'));
  await swarm.call('heavy', 'echo', PARAMS);
  const call = [];
  for (let i = 0; i < calls; i++) {
    const t = process.hrtime.bigint();
    await swarm.call('heavy', 'echo', PARAMS);
    call.push(Number(process.hrtime.bigint() - t));
  }
  await swarm.close();
  process.stdout.write(JSON.stringify({ metrics: { call } }) + '\n');
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
