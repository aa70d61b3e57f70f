// Scenario 6: skep's Node package (napi, in-process) driving heavy_agent.py.
//
//   node skep_node.js CALLS BATCHES TOML_FILE
//
// When the package is not built (no .node file in orchestrator-bindings/),
// prints {"skipped": reason} and exits 0, so the runner reports the row as
// skipped. Otherwise prints {"metrics": {"call": [ns...], "batch": [ns...]}}.
'use strict';
const fs = require('fs');
const path = require('path');
const { measure, run } = require('./node_timing');

const PACKAGE = path.resolve(__dirname, '..', '..', 'orchestrator-bindings');

run(async () => {
  if (!fs.readdirSync(PACKAGE).some((f) => f.endsWith('.node'))) {
    return { skipped: `no .node file in ${PACKAGE}: run npm install && npm run build there first` };
  }
  const { Swarm } = require(PACKAGE);
  const [calls, batches, tomlFile] = process.argv.slice(2);
  const swarm = await Swarm.fromToml(fs.readFileSync(tomlFile, 'utf8'));
  const metrics = await measure((params) => swarm.call('heavy', 'echo', params), Number(calls), Number(batches));
  await swarm.close();
  return { metrics };
});
