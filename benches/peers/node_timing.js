// What scenario 6 measures, the same way for each Node contender: CALLS
// sequential calls (ns each), then BATCHES batches of 1,024 calls with 128 in
// flight (ns per batch). `call` is the contender's `(params) => Promise`.
// Untimed warm-up first. Checks every answer.
'use strict';

const WINDOW = 128;
const BATCH = 1024;
const PARAMS = { text: 'x'.repeat(89) }; // 100 bytes of JSON

async function checked(call) {
  const reply = await call(PARAMS);
  if (reply?.text !== PARAMS.text) throw new Error(`echo changed its params: ${JSON.stringify(reply)}`);
}

async function pipelined(call, total) {
  let next = 0;
  async function lane() {
    while (next < total) {
      next += 1;
      await checked(call);
    }
  }
  await Promise.all(Array.from({ length: WINDOW }, lane));
}

async function measure(call, calls, batches) {
  for (let i = 0; i < 100; i++) await checked(call);
  await pipelined(call, BATCH);
  const sequential = [];
  for (let i = 0; i < calls; i++) {
    const t = process.hrtime.bigint();
    await checked(call);
    sequential.push(Number(process.hrtime.bigint() - t));
  }
  const batch = [];
  for (let i = 0; i < batches; i++) {
    const t = process.hrtime.bigint();
    await pipelined(call, BATCH);
    batch.push(Number(process.hrtime.bigint() - t));
  }
  return { call: sequential, batch };
}

/** Runs `main`, printing {"metrics": ...} or failing with the error. */
function run(main) {
  main().then(
    (result) => process.stdout.write(JSON.stringify(result) + '\n'),
    (e) => {
      console.error(e);
      process.exit(1);
    },
  );
}

module.exports = { measure, run, checked, pipelined, BATCH, WINDOW };
