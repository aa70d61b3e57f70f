// Scenario 6's peer: what a Node developer writes without skep, a small
// child_process pool of warm heavy_agent.py processes speaking newline
// JSON-RPC, with a queue for callers when every worker is busy.
//
//   node node_pool.js CALLS [WORKERS]
//
// Starts WORKERS agents (default 2), waits until each answered once (not
// timed), then times CALLS sequential echo calls of a 100-byte object.
// Prints {"metrics": {"call": [ns...]}}.
'use strict';
const { spawn } = require('child_process');
const path = require('path');
const readline = require('readline');

const PARAMS = { text: 'x'.repeat(89) };

class Worker {
  constructor() {
    this.child = spawn(process.env.SKEP_BENCH_PYTHON || 'python3', [path.join(__dirname, 'heavy_agent.py')], { stdio: ['pipe', 'pipe', 'inherit'] });
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
  constructor(size) {
    this.idle = Array.from({ length: size }, () => new Worker());
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

async function main() {
  const calls = Number(process.argv[2]);
  const pool = new Pool(Number(process.argv[3] || 2));
  await Promise.all(pool.all.map((w) => w.call('echo', PARAMS)));
  for (let i = 0; i < 100; i++) await pool.call('echo', PARAMS);
  const call = [];
  for (let i = 0; i < calls; i++) {
    const t = process.hrtime.bigint();
    await pool.call('echo', PARAMS);
    call.push(Number(process.hrtime.bigint() - t));
  }
  pool.close();
  process.stdout.write(JSON.stringify({ metrics: { call } }) + '\n');
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
