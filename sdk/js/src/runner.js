// What weir does with a stage, in plain JavaScript. The component's exports
// and the native test harness both go through a Runner, so a test sees what
// weir would publish or dead-letter.
//
// An outcome is ['ok', [Event...]], ['invalid', message] or ['retry', message].
import { Event } from './event.js';
import { StageError } from './errors.js';
import { describe } from './where.js';
import { beginBatch } from './kv.js';

const EXPECTED = 'return nothing (drop the event), an Event (map), or an array of Events (split)';

function short(value) {
  let shown;
  try {
    shown = JSON.stringify(value);
  } catch {
    shown = undefined;
  }
  if (shown === undefined) shown = String(value);
  if (shown.length > 60) shown = `${shown.slice(0, 57)}...`;
  const type = value === null ? 'null' : Array.isArray(value) ? 'array' : typeof value === 'object' ? (value.constructor?.name ?? 'object') : typeof value;
  return `${type} ${shown}`;
}

function isThenable(value) {
  return value !== null && typeof value === 'object' && typeof value.then === 'function';
}

const PROMISE = 'returned a Promise: stages run synchronously (there is no I/O to wait for in the sandbox); remove `async`';

export function normalize(result, what = 'process') {
  if (result === undefined || result === null) return ['ok', []];
  if (result instanceof Event) return ['ok', [result]];
  if (Array.isArray(result)) {
    for (const item of result) {
      if (!(item instanceof Event)) return ['invalid', `${what} returned an array holding ${short(item)}; an array may hold only Events (${EXPECTED})`];
    }
    return ['ok', result];
  }
  if (result instanceof StageError) return [result.kind, result.message];
  if (isThenable(result)) return ['invalid', `${what} ${PROMISE}`];
  return ['invalid', `${what} returned ${short(result)}; ${EXPECTED}`];
}

function fromError(error) {
  if (error instanceof StageError) return [error.kind, error.message];
  return ['invalid', describe(error)];
}

export class InitRefused extends Error {}

export class Runner {
  constructor(stage) {
    const proto = typeof stage === 'function' ? stage.prototype : stage;
    if (proto === null || (typeof proto !== 'object')) {
      throw new TypeError(`exportStage() takes the stage's class (or an object with process), not ${short(stage)}`);
    }
    this.batched = typeof proto.processBatch === 'function';
    if (!this.batched && typeof proto.process !== 'function') {
      throw new TypeError(`${stage.name ?? 'the stage'} has neither process(event) nor processBatch(events)`);
    }
    this.definition = stage;
    this.stage = undefined;
  }

  /** Creates the stage and runs its init; throws InitRefused. */
  init(configJson) {
    let config;
    try {
      config = configJson ? JSON.parse(configJson) : {};
    } catch (error) {
      throw new InitRefused(`config is not valid JSON: ${error.message}`);
    }
    this.stage = undefined;
    let stage;
    try {
      stage = typeof this.definition === 'function' ? new this.definition() : this.definition;
      if (typeof stage.init === 'function') {
        const done = stage.init(config);
        if (isThenable(done)) throw new InitRefused(`init ${PROMISE}`);
      }
    } catch (error) {
      if (error instanceof InitRefused) throw error;
      throw new InitRefused(error instanceof StageError ? error.message : describe(error));
    }
    this.stage = stage;
  }

  process(events) {
    const stage = this.stage;
    if (stage === undefined) throw new Error('weir-stage: process was called before a successful init');
    beginBatch();
    if (this.batched) return this.#batch(stage, events);
    const outcomes = new Array(events.length);
    for (let i = 0; i < events.length; i++) {
      let result;
      try {
        result = stage.process(events[i]);
      } catch (error) {
        outcomes[i] = fromError(error);
        continue;
      }
      outcomes[i] = result instanceof Event ? ['ok', [result]] : normalize(result);
    }
    return outcomes;
  }

  #batch(stage, events) {
    let results;
    try {
      results = stage.processBatch(events);
    } catch (error) {
      if (events.length <= 1) return events.map(() => fromError(error));
      // As weir does after a fault: each event alone, so that only the one
      // that throws is refused.
      return events.flatMap((event) => this.#batch(stage, [event]));
    }
    if (!Array.isArray(results)) {
      const message = isThenable(results)
        ? `processBatch ${PROMISE}`
        : `processBatch returned ${short(results)}; it must return an array with one entry per event (each: nothing, an Event, an array of Events, or an Invalid/Retry)`;
      return events.map(() => ['invalid', message]);
    }
    if (results.length !== events.length) {
      const message = `processBatch returned ${results.length} results for a batch of ${events.length} events; it must return exactly one per event, in order (null to drop one)`;
      return events.map(() => ['invalid', message]);
    }
    return results.map((result) => normalize(result, 'processBatch'));
  }
}
