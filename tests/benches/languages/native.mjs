// The JavaScript json-map stage (js/stage.js) run natively in node through
// the SDK's test harness (weir-stage/testing), timed here over the same
// events as the wasm runs. Called by tests/benches/languages.rs from a
// scratch directory where stage.js sits beside this file and
// node_modules/weir-stage links to sdk/js:
//
//   node native.mjs EVENTS_FILE CONFIG_JSON BATCH ROUNDS
//
// EVENTS_FILE holds one payload per line. Prints one line,
// `ns_per_event=BEST mean=MEAN node=VERSION`: the best and the mean round.
import { readFileSync } from 'node:fs';
import { Event } from 'weir-stage';
import { start } from 'weir-stage/testing';
import Stage from './stage.js';

const [eventsFile, config, batchArg, roundsArg] = process.argv.slice(2);
const batch = Number(batchArg);
const rounds = Number(roundsArg);
const payloads = readFileSync(eventsFile, 'utf8').split('\n').filter((line) => line.trim());
const events = payloads.map((p) => new Event('tracking.product.viewed', p));
const batches = [];
for (let i = 0; i < events.length; i += batch) batches.push(events.slice(i, i + batch));
const instance = start(Stage, config);

function oneRound() {
  const started = process.hrtime.bigint();
  let outcomes;
  for (const b of batches) outcomes = instance.process(b);
  const elapsed = Number(process.hrtime.bigint() - started);
  const last = outcomes[outcomes.length - 1];
  if (!last.ok || last.events.length !== 1) throw new Error(`unexpected outcome: ${last.kind} ${last.message}`);
  return elapsed;
}

oneRound(); // warm-up (and the JIT's)
const times = [];
for (let i = 0; i < rounds; i++) times.push(oneRound());
const n = events.length;
const best = Math.min(...times) / n;
const mean = times.reduce((a, b) => a + b, 0) / times.length / n;
console.log(`ns_per_event=${best.toFixed(1)} mean=${mean.toFixed(1)} node=${process.versions.node}`);
