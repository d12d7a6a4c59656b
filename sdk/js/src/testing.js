// Run a stage natively, the way weir would, for `node --test`.
//
//   import { test } from 'node:test';
//   import assert from 'node:assert/strict';
//   import { Event } from 'weir-stage';
//   import { runOne } from 'weir-stage/testing';
//   import AddRegion from './stage.js';
//
//   test('adds the region', () => {
//     const out = runOne(AddRegion, { region: 'us' }, new Event('orders', '{"id": 1}'));
//     assert.deepEqual(out.json(), { id: 1, region: 'us' });
//   });
import { Event } from './event.js';
import { Runner, InitRefused } from './runner.js';
import { testStore, capturedLogs, settings } from '#host';
import { format } from './format.js';

const encoder = new TextEncoder();

/** `init` refused the configuration (weir would not start the stage). */
export class InitError extends Error {
  constructor(message) {
    super(`init refused the config: ${message}`);
    this.name = 'InitError';
    this.reason = message;
  }
}

/** What became of one input event. */
export class Outcome {
  constructor(kind, events, message) {
    this.kind = kind;
    this.events = events;
    this.message = message;
  }
  get ok() {
    return this.kind === 'ok';
  }
  get dropped() {
    return this.kind === 'ok' && this.events.length === 0;
  }
  get invalid() {
    return this.kind === 'invalid' ? this.message : undefined;
  }
  get retry() {
    return this.kind === 'retry' ? this.message : undefined;
  }
  /** The one output; throws unless there is exactly one. */
  get event() {
    if (this.kind !== 'ok') throw new Error(`the event was refused (${this.kind}): ${this.message}`);
    if (this.events.length !== 1) throw new Error(`expected exactly one output, got ${this.events.length}: ${this.events.join(', ')}`);
    return this.events[0];
  }
  /** The one output's payload, parsed. */
  json() {
    return this.event.json();
  }
  toString() {
    return this.kind === 'ok' ? `Outcome(ok, [${this.events.join(', ')}])` : `Outcome(${this.kind}, ${JSON.stringify(this.message)})`;
  }
}

// As in weir: console.log and console.info become log lines at info,
// console.warn at warn, console.error at error.
function withConsoleCaptured(fn) {
  const saved = {};
  const levels = { log: 'info', info: 'info', warn: 'warn', error: 'error', debug: 'debug', trace: 'trace' };
  for (const [name, level] of Object.entries(levels)) {
    saved[name] = console[name];
    console[name] = (...args) => capturedLogs.push([level, format(args)]);
  }
  try {
    return fn();
  } finally {
    Object.assign(console, saved);
  }
}

function checkEvents(events) {
  return Array.from(events, (event, i) => {
    if (!(event instanceof Event)) throw new TypeError(`event ${i} is not an Event (use new Event(subject, payload, headers))`);
    return event;
  });
}

/** One instance of a stage after a successful `init`. */
export class Instance {
  #runner;
  constructor(stage, config = {}) {
    this.#runner = new Runner(stage?.stage ?? stage);
    const configJson = typeof config === 'string' ? config : JSON.stringify(config ?? {});
    capturedLogs.length = 0;
    try {
      withConsoleCaptured(() => this.#runner.init(configJson));
    } catch (error) {
      if (error instanceof InitRefused) throw new InitError(error.message);
      throw error;
    }
  }
  /** The stage object itself, to look at its state. */
  get stage() {
    return this.#runner.stage;
  }
  /** Runs one batch; one Outcome per event, in order. */
  process(events) {
    const checked = checkEvents(events);
    return withConsoleCaptured(() => this.#runner.process(checked)).map(([kind, value]) =>
      kind === 'ok' ? new Outcome('ok', value, undefined) : new Outcome(kind, [], value),
    );
  }
  processOne(event) {
    return this.process([event])[0];
  }
}

/** Creates an instance and runs its init with `config` (an object, or JSON text). */
export function start(stage, config = {}) {
  return new Instance(stage, config);
}

export function run(stage, config, events) {
  return start(stage, config).process(events);
}

export function runOne(stage, config, event) {
  return start(stage, config).processOne(event);
}

/** The message with which init refuses `config`, or undefined if it accepts it. */
export function initError(stage, config = {}) {
  try {
    start(stage, config);
  } catch (error) {
    if (error instanceof InitError) return error.reason;
    throw error;
  }
  return undefined;
}

/** Puts a value where `kv.get` reads it natively: bytes and strings as they are, anything else as JSON. */
export function kvPut(bucket, key, value) {
  let bytes;
  if (value instanceof Uint8Array) bytes = value;
  else if (typeof value === 'string') bytes = encoder.encode(value);
  else bytes = encoder.encode(JSON.stringify(value));
  if (!testStore.has(bucket)) testStore.set(bucket, new Map());
  testStore.get(bucket).set(key, bytes);
}

/** Empties every bucket: they all count as not granted again. */
export function kvClear() {
  testStore.clear();
}

/** The [level, message] lines logged or printed since the last start. */
export function logs() {
  return capturedLogs.slice();
}

/** Turns the [LEVEL] echo of log lines on stderr on or off (on by default). */
export function echoLogs(on) {
  settings.echo = Boolean(on);
}
