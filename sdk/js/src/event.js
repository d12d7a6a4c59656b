import { Invalid } from './errors.js';

const encoder = new TextEncoder();
const strictDecoder = new TextDecoder('utf-8', { fatal: true });
const EMPTY = new Uint8Array(0);

function asBytes(payload) {
  if (payload instanceof Uint8Array) return payload;
  if (typeof payload === 'string') return encoder.encode(payload);
  if (payload instanceof ArrayBuffer) return new Uint8Array(payload);
  if (ArrayBuffer.isView(payload)) return new Uint8Array(payload.buffer, payload.byteOffset, payload.byteLength);
  if (payload === undefined || payload === null) return EMPTY;
  throw new TypeError(
    `an event's payload must be a Uint8Array or a string, not ${describeType(payload)}; ` +
      'use Event.fromJson(subject, value) or event.withJson(value) for JSON',
  );
}

function describeType(value) {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'object') return `an object (${value.constructor?.name ?? 'Object'})`;
  return `a ${typeof value}`;
}

function asHeaders(headers) {
  if (headers === undefined || headers === null) return [];
  if (Array.isArray(headers)) return headers.map(([n, v]) => [String(n), String(v)]);
  return Object.entries(headers).map(([n, v]) => [n, String(v)]);
}

function dumps(value) {
  let text;
  try {
    text = JSON.stringify(value);
  } catch (error) {
    throw new Invalid(`cannot write the payload as JSON: ${error.message}`);
  }
  if (text === undefined) throw new Invalid(`cannot write the payload as JSON: ${describeType(value)} has no JSON form`);
  return encoder.encode(text);
}

function decode(bytes, what) {
  try {
    return strictDecoder.decode(bytes);
  } catch {
    throw new Invalid(`${what} is not valid UTF-8`);
  }
}

// A new event from its parts, without checking them again. (Not a private
// method: events from weir are made with Object.create, without the
// constructor, and private members would not exist on them.)
function copy(subject, headers, payload) {
  const event = Object.create(Event.prototype);
  event.subject = subject;
  event.headers = headers;
  event.payload = payload;
  return event;
}

/**
 * One message: a NATS subject, headers and a payload.
 *
 * The `with*` methods return a changed copy and leave the event as it is.
 */
export class Event {
  /**
   * @param {string} subject
   * @param {Uint8Array|string} [payload]
   * @param {Array<[string,string]>|Record<string,string>} [headers]
   */
  constructor(subject, payload = EMPTY, headers = undefined) {
    this.subject = String(subject);
    this.headers = asHeaders(headers);
    this.payload = asBytes(payload);
  }

  /** An event whose payload is `value` written as JSON. */
  static fromJson(subject, value, headers = undefined) {
    return new Event(subject, dumps(value), headers);
  }

  /** The payload parsed as JSON; `Invalid` if it is not JSON. */
  json() {
    const text = decode(this.payload, 'payload is not valid JSON: it');
    try {
      return JSON.parse(text);
    } catch (error) {
      throw new Invalid(`payload is not valid JSON: ${error.message}`);
    }
  }

  /** The payload as UTF-8 text; `Invalid` if it is not UTF-8. */
  get text() {
    return decode(this.payload, 'payload');
  }

  /** The value of the first header called `name` (exact case), or `undefined`. */
  header(name) {
    for (const [n, v] of this.headers) if (n === name) return v;
    return undefined;
  }

  /** Every value of the headers called `name`, in order. */
  headerValues(name) {
    return this.headers.filter(([n]) => n === name).map(([, v]) => v);
  }

  withPayload(payload) {
    return copy(this.subject, this.headers.slice(), asBytes(payload));
  }

  withJson(value) {
    return copy(this.subject, this.headers.slice(), dumps(value));
  }

  withSubject(subject) {
    return copy(String(subject), this.headers.slice(), this.payload);
  }

  /** A copy with the header set to `value`, replacing every header of that name. */
  withHeader(name, value) {
    const headers = this.headers.filter(([n]) => n !== name);
    headers.push([name, String(value)]);
    return copy(this.subject, headers, this.payload);
  }

  /** A copy with one more header, after any of the same name. */
  addHeader(name, value) {
    return copy(this.subject, [...this.headers, [name, String(value)]], this.payload);
  }

  withoutHeader(name) {
    return copy(this.subject, this.headers.filter(([n]) => n !== name), this.payload);
  }

  /** Wraps an event as the bindings hand it over, without copying. */
  static _wrap(raw) {
    const event = Object.create(Event.prototype);
    event.subject = raw.subject;
    event.headers = raw.headers;
    event.payload = raw.payload;
    return event;
  }

  toString() {
    let payload;
    try {
      payload = JSON.stringify(strictDecoder.decode(this.payload));
    } catch {
      payload = `<${this.payload.length} bytes>`;
    }
    return `Event(${JSON.stringify(this.subject)}, ${payload}${this.headers.length ? `, ${JSON.stringify(this.headers)}` : ''})`;
  }
}
