// Types of weir-stage: weir pipeline stages in JavaScript or TypeScript.

/** Header pairs in arrival order; a name may repeat. */
export type Headers = Array<[name: string, value: string]>;

/** One message: a NATS subject, headers and a payload. The `with*` methods return a changed copy. */
export class Event {
  constructor(subject: string, payload?: Uint8Array | string, headers?: Headers | Record<string, string>);
  /** An event whose payload is `value` written as JSON. */
  static fromJson(subject: string, value: unknown, headers?: Headers | Record<string, string>): Event;
  /** The NATS subject: on input where it arrived; on output where it goes (a different one routes it). */
  subject: string;
  headers: Headers;
  /** The payload's bytes, untouched. */
  payload: Uint8Array;
  /** The payload parsed as JSON; throws `Invalid` (`payload is not valid JSON: ...`) if it is not. */
  json<T = any>(): T;
  /** The payload as UTF-8 text; throws `Invalid` if it is not UTF-8. */
  readonly text: string;
  /** The first header called `name` (exact case), or undefined. */
  header(name: string): string | undefined;
  headerValues(name: string): string[];
  withPayload(payload: Uint8Array | string): Event;
  /** A copy whose payload is `value` as JSON; `Invalid` if it has no JSON form. */
  withJson(value: unknown): Event;
  withSubject(subject: string): Event;
  /** A copy with the header set, replacing every header of that name. */
  withHeader(name: string, value: string | number | boolean): Event;
  addHeader(name: string, value: string | number | boolean): Event;
  withoutHeader(name: string): Event;
}

/** Base class of `Invalid` and `Retry`. */
export class StageError extends Error {
  readonly kind: 'invalid' | 'retry';
}
/** The event is bad for this stage: dead-lettered with this message, never retried. */
export class Invalid extends StageError {
  readonly kind: 'invalid';
}
/** A transient failure: redelivered by a JetStream source, dead-lettered at once from core NATS. */
export class Retry extends StageError {
  readonly kind: 'retry';
}

/** What `process` may return for one event: nothing (drop), an event (map), events (split). */
export type Output = Event | Event[] | null | undefined | void;
/** What `processBatch` may return per event: an output, or an `Invalid`/`Retry` for that event. */
export type BatchOutput = Output | StageError;

/** A stage: `process` or `processBatch` (or both), and an optional `init`. */
export interface Stage {
  /** Called once per instance with the `config` table of the pipeline TOML; throw to refuse it. */
  init?(config: Record<string, any>): void;
  process?(event: Event): Output;
  /** Sees the whole batch; returns exactly one entry per event, in order. */
  processBatch?(events: Event[]): BatchOutput[];
}

export type StageClass = new () => Stage;

/** The component's exports, as weir's `stage` world wants them. */
export interface StageExports {
  stage: StageClass | Stage;
  init(config: string): { tag: 'ok'; val: undefined } | { tag: 'err'; val: string };
  process(events: Array<{ subject: string; headers: Headers; payload: Uint8Array }>): Array<
    { tag: 'ok'; val: Event[] } | { tag: 'err'; val: { tag: 'invalid' | 'retry'; val: string } }
  >;
}

/** `export const { init, process } = exportStage(MyStage);` */
export function exportStage(stage: StageClass | Stage): StageExports;

/** NATS KV buckets granted to the stage (`grants = { kv = [...] }`). A bucket not granted throws `Invalid`. */
export namespace kv {
  /** The value's bytes, or undefined when the key is absent. */
  function get(bucket: string, key: string): Uint8Array | undefined;
  function getText(bucket: string, key: string): string | undefined;
  /** The value parsed as JSON, or undefined; `Invalid` if it is not JSON. */
  function getJson<T = any>(bucket: string, key: string): T | undefined;
}

/** Lines into weir's log, tagged with the pipeline and stage. Arguments are formatted as console.log does. */
export namespace log {
  type Level = 'trace' | 'debug' | 'info' | 'warn' | 'error';
  function log(level: Level, ...args: unknown[]): void;
  function trace(...args: unknown[]): void;
  function debug(...args: unknown[]): void;
  function info(...args: unknown[]): void;
  function warn(...args: unknown[]): void;
  function error(...args: unknown[]): void;
}
