// The Node package's hot path against the hand-written child_process pool
// (node_pool.js), the SAME agent both ways, alternating in one process so
// the machine's load falls on both alike.
//
//   node node_hotpath.js [--rounds N] [--agent test|python] [--agents K]
//                        [--calls C] [--batches B] [--base DIR]
//
// --agent test (default): target/release/skep-test-agent ($SKEP_TEST_AGENT),
//   a fast echo, so the call's overhead is what is measured.
// --agent python: heavy_agent.py (scenario 6's agent; its start-up sleep is
//   skipped unless $SKEP_BENCH_INIT_MS says otherwise).
// --base DIR: also measure another build of the package (a directory with
//   its index.js and .node file), e.g. a copy of the build before a change;
//   repeatable.
// --cached: the package's role lists echo as idempotent, so after the first
//   call every call is a cache hit (the pool has no cache: its row is unchanged).
//
// Each round measures every contender once, in turn (the order rotates per
// round): C calls one at a time, then B batches of 1,024 calls with 128 in
// flight. Per contender it prints the median over rounds of: wall time per
// call, CPU time of this process per call (all its threads: Node's and the
// addon's), and context switches per call; and the ratio to the pool. Then
// the CPU time per call of Node's main thread and of the addon's runtime
// thread apart (from /proc/self/task/*/schedstat).
'use strict';
const fs = require('fs');
const path = require('path');
const { parseArgs } = require('util');
const { Pool } = require('./node_pool');
const { checked, pipelined, BATCH, WINDOW } = require('./node_timing');

const REPO = path.resolve(__dirname, '..', '..');

const { values: opts } = parseArgs({
  options: {
    rounds: { type: 'string', default: '5' },
    agent: { type: 'string', default: 'test' },
    agents: { type: 'string', default: '2' },
    calls: { type: 'string', default: '2000' },
    batches: { type: 'string', default: '5' },
    base: { type: 'string', multiple: true },
    cached: { type: 'boolean', default: false },
  },
});

function agentArgv(kind) {
  if (kind === 'test') {
    const bin = process.env.SKEP_TEST_AGENT || path.join(process.env.CARGO_TARGET_DIR || path.join(REPO, 'target'), 'release', 'skep-test-agent');
    if (!fs.existsSync(bin)) throw new Error(`${bin} is not built: cargo build --release -p skep-swarm --bins`);
    return [bin];
  }
  if (kind === 'python') {
    process.env.SKEP_BENCH_INIT_MS ??= '0';
    return [process.env.SKEP_BENCH_PYTHON || 'python3', path.join(__dirname, 'heavy_agent.py')];
  }
  throw new Error(`--agent must be test or python, not ${kind}`);
}


/** CPU time (ns, from the scheduler) of Node's main thread and of the addon's runtime threads (named skep). */
function threadTimes() {
  const times = { main: 0, skep: 0 };
  for (const tid of fs.readdirSync('/proc/self/task')) {
    const task = `/proc/self/task/${tid}`;
    try {
      const ns = Number(fs.readFileSync(`${task}/schedstat`, 'utf8').split(' ')[0]);
      if (Number(tid) === process.pid) times.main += ns;
      else if (fs.readFileSync(`${task}/comm`, 'utf8').trim() === 'skep') times.skep += ns;
    } catch {
      // The thread ended meanwhile.
    }
  }
  return times;
}

/** Runs `body`, returning what it cost per call: wall ns, CPU ns (all, main thread, runtime), context switches. */
async function cost(calls, body) {
  const [cpu, usage, threads, t] = [process.cpuUsage(), process.resourceUsage(), threadTimes(), process.hrtime.bigint()];
  await body();
  const wall = Number(process.hrtime.bigint() - t);
  const spent = process.cpuUsage(cpu);
  const after = process.resourceUsage();
  const threadsAfter = threadTimes();
  const switches =
    after.voluntaryContextSwitches - usage.voluntaryContextSwitches + after.involuntaryContextSwitches - usage.involuntaryContextSwitches;
  return {
    wall: wall / calls,
    cpu: ((spent.user + spent.system) * 1000) / calls,
    main: (threadsAfter.main - threads.main) / calls,
    skep: (threadsAfter.skep - threads.skep) / calls,
    switches: switches / calls,
  };
}

async function round(call, calls, batches) {
  const one = await cost(calls, async () => {
    for (let i = 0; i < calls; i++) await checked(call);
  });
  const many = await cost(batches * BATCH, async () => {
    for (let i = 0; i < batches; i++) await pipelined(call, BATCH);
  });
  return { one, many };
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

async function main() {
  const [rounds, agents, calls, batches] = [opts.rounds, opts.agents, opts.calls, opts.batches].map(Number);
  const argv = agentArgv(opts.agent);
  const cached = opts.cached ? 'idempotent = ["echo"]\n' : '';
  const toml = `[roles.echo]\ncommand = ${JSON.stringify(argv)}\nmin_warm = ${agents}\nmax_agents = ${agents}\n${cached}`;
  const contenders = [];
  const pool = new Pool(agents, argv);
  contenders.push({ name: 'child_process pool', call: (p) => pool.call('echo', p), close: () => pool.close() });
  const packages = [['skep package', path.join(REPO, 'orchestrator-bindings')]];
  for (const dir of opts.base ?? []) packages.push([`skep ${path.basename(dir)}`, path.resolve(dir)]);
  for (const [name, dir] of packages) {
    const swarm = await require(dir).Swarm.fromToml(toml);
    contenders.push({ name, call: (p) => swarm.call('echo', 'echo', p), close: () => swarm.close() });
  }
  for (const c of contenders) {
    for (let i = 0; i < 200; i++) await checked(c.call);
    await pipelined(c.call, BATCH);
    c.rounds = [];
  }
  for (let r = 0; r < rounds; r++) {
    for (let k = 0; k < contenders.length; k++) {
      const c = contenders[(r + k) % contenders.length];
      c.rounds.push(await round(c.call, calls, batches));
    }
  }
  const summary = contenders.map((c) => {
    const pick = (which, key) => median(c.rounds.map((x) => x[which][key]));
    return {
      name: c.name,
      one: { us: pick('one', 'wall') / 1000, cpuUs: pick('one', 'cpu') / 1000, mainUs: pick('one', 'main') / 1000, skepUs: pick('one', 'skep') / 1000, switches: pick('one', 'switches') },
      many: { callsPerS: 1e9 / pick('many', 'wall'), cpuUs: pick('many', 'cpu') / 1000, mainUs: pick('many', 'main') / 1000, skepUs: pick('many', 'skep') / 1000, switches: pick('many', 'switches') },
    };
  });
  const [peer] = summary;
  const f = (x, d = 1) => x.toFixed(d);
  console.log(`agent: ${opts.agent} (${argv.join(' ')}), ${agents} warm; ${rounds} rounds of ${calls} single calls and ${batches}x${BATCH} with ${WINDOW} in flight; medians over rounds`);
  console.log('contender                 | 1 in flight: µs/call  CPU µs/call  ctxsw/call  ratio | 128 in flight: calls/s  CPU µs/call  ctxsw/call  ratio');
  for (const s of summary) {
    console.log(
      `${s.name.padEnd(25)} | ${f(s.one.us).padStart(20)} ${f(s.one.cpuUs).padStart(12)} ${f(s.one.switches, 2).padStart(11)} ${f(s.one.us / peer.one.us, 2).padStart(5)}x` +
        ` | ${f(s.many.callsPerS, 0).padStart(22)} ${f(s.many.cpuUs).padStart(12)} ${f(s.many.switches, 2).padStart(11)} ${f(peer.many.callsPerS / s.many.callsPerS, 2).padStart(5)}x`,
    );
  }
  console.log('\nCPU µs per call by thread: Node main thread / the addon runtime (skep)');
  for (const s of summary) {
    console.log(`${s.name.padEnd(25)} | 1 in flight: ${f(s.one.mainUs)} / ${f(s.one.skepUs)} | 128 in flight: ${f(s.many.mainUs)} / ${f(s.many.skepUs)}`);
  }
  for (const c of contenders) await c.close();
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
