// Reading NATS KV buckets granted to the stage (`grants = { kv = [...] }`).
import { kvGet } from '#host';
import { Invalid } from './errors.js';

const decoder = new TextDecoder('utf-8', { fatal: true });
// bucket -> key -> value, for the current batch (the runner clears it).
const batch = new Map();

export function beginBatch() {
  batch.clear();
}

/** The value as bytes, or `undefined` when the key is absent (or deleted). */
export function get(bucket, key) {
  let keys = batch.get(bucket);
  if (keys !== undefined && keys.has(key)) return keys.get(key);
  let value;
  try {
    value = kvGet(bucket, key);
  } catch (error) {
    throw new Invalid(error.message);
  }
  if (value === null) value = undefined;
  if (keys === undefined) batch.set(bucket, (keys = new Map()));
  keys.set(key, value);
  return value;
}

/** The value as UTF-8 text, or `undefined`. */
export function getText(bucket, key) {
  const value = get(bucket, key);
  if (value === undefined) return undefined;
  try {
    return decoder.decode(value);
  } catch {
    throw new Invalid(`kv value ${bucket}/${key} is not valid UTF-8`);
  }
}

/** The value parsed as JSON, or `undefined`; `Invalid` if it is not JSON. */
export function getJson(bucket, key) {
  const text = getText(bucket, key);
  if (text === undefined) return undefined;
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new Invalid(`kv value ${bucket}/${key} is not valid JSON: ${error.message}`);
  }
}
