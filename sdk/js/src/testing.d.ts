// Types of weir-stage/testing: run a stage natively, the way weir would.
import type { Event, Stage, StageClass, StageExports } from './index.js';

type Definition = StageClass | Stage | Pick<StageExports, 'stage'>;
type Config = Record<string, unknown> | string;

/** init refused the configuration. `reason` is the stage's message. */
export class InitError extends Error {
  readonly reason: string;
}

/** What became of one input event. */
export class Outcome {
  readonly kind: 'ok' | 'invalid' | 'retry';
  /** The outputs: empty when dropped or refused. */
  readonly events: Event[];
  readonly message: string | undefined;
  readonly ok: boolean;
  readonly dropped: boolean;
  /** The message when refused as invalid, else undefined. */
  readonly invalid: string | undefined;
  readonly retry: string | undefined;
  /** The one output; throws unless there is exactly one. */
  readonly event: Event;
  /** The one output's payload, parsed. */
  json<T = any>(): T;
}

/** One instance after a successful init; state lives across its batches. */
export class Instance {
  readonly stage: Stage;
  process(events: Iterable<Event>): Outcome[];
  processOne(event: Event): Outcome;
}

export function start(stage: Definition, config?: Config): Instance;
export function run(stage: Definition, config: Config, events: Iterable<Event>): Outcome[];
export function runOne(stage: Definition, config: Config, event: Event): Outcome;
/** The message with which init refuses `config`, or undefined. */
export function initError(stage: Definition, config?: Config): string | undefined;
/** Bytes and strings are stored as they are, anything else as JSON. */
export function kvPut(bucket: string, key: string, value: unknown): void;
export function kvClear(): void;
/** The [level, message] lines logged or printed since the last start. */
export function logs(): Array<[level: string, message: string]>;
export function echoLogs(on: boolean): void;
