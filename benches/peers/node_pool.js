// Scenario 6's peer: what a Node developer writes without skep, a small
// child_process pool of warm heavy_agent.py processes speaking newline
// JSON-RPC, with a queue for callers when every worker is busy.
//
//   node node_pool.js CALLS BATCHES [WORKERS]
//
// Starts WORKERS agents (default 2), then measures as node_timing.js says.
// Prints {"metrics": {"call": [ns...], "batch": [ns...]}}. Required as a
// module, exports `Pool` (node_hotpath.js runs it on other agents).
'use strict';
const { spawn } = require('child_process');
const path = require('path');
const readline = require('readline');
const { measure, run } = require('./node_timing');

/** heavy_agent.py, run by $SKEP_BENCH_PYTHON or python3. */
const HEAVY_AGENT = [process.env.SKEP_BENCH_PYTHON || 'python3', path.join(__dirname, 'heavy_agent.py')];

class Worker {
  constructor([program, ...args]) {
    this.child = spawn(program, args, { stdio: ['pipe', 'pipe', 'inherit'] });
    this.pending = new Map();
    this.nextId = 0;
    readline.createInterface({ input: this.child.stdout }).on('line', (line) => {
      const msg = JSON.parse(line);
      const waiter = this.pending.get(msg.id);
      this.pending.delete(msg.id);
      if (msg.error) waiter.reject(new Error(msg.error.message));
      else waiter.resolve(msg.result);
    });
  }

  call(method, params) {
    const id = ++this.nextId;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.child.stdin.write(JSON.stringify({ jsonrpc: '2.0', id, method, params }) + '\n');
    });
  }
}

class Pool {
  /** `size` warm agents, each started as `argv` (program first). */
  constructor(size, argv = HEAVY_AGENT) {
    this.idle = Array.from({ length: size }, () => new Worker(argv));
    this.all = [...this.idle];
    this.waiting = [];
  }

  async call(method, params) {
    const worker = this.idle.pop() || (await new Promise((resolve) => this.waiting.push(resolve)));
    try {
      return await worker.call(method, params);
    } finally {
      const next = this.waiting.shift();
      if (next) next(worker);
      else this.idle.push(worker);
    }
  }

  close() {
    for (const w of this.all) w.child.stdin.end();
  }
}

module.exports = { Pool };

if (require.main === module) {
  run(async () => {
    const [calls, batches, workers] = process.argv.slice(2).map(Number);
    const pool = new Pool(workers || 2);
    const metrics = await measure((params) => pool.call('echo', params), calls, batches);
    pool.close();
    return { metrics };
  });
}
