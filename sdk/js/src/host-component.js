// The host calls inside weir: the bundler picks this file (condition
// "weir-component") and componentize-js links the import to weir's host.
import { log as hostLog, kvGet as hostKvGet } from 'weir:stage/host@0.2.0';
import { format } from './format.js';

export const IN_WEIR = true;
export const testStore = new Map();
export const capturedLogs = [];
export const settings = { echo: false };

export function log(level, message) {
  hostLog(level, message);
}

export function kvGet(bucket, key) {
  try {
    return hostKvGet(bucket, key);
  } catch (error) {
    // The bindings throw the WIT error string as `payload`.
    throw new Error(error && error.payload !== undefined ? String(error.payload) : String(error));
  }
}

let routed = false;

// console.log and friends become lines in weir's log (called from the
// first `init`, not at build time, when there is no host to call).
export function routeConsole() {
  if (routed) return;
  routed = true;
  const to = (level) => (...args) => hostLog(level, format(args));
  globalThis.console.log = to('info');
  globalThis.console.info = to('info');
  globalThis.console.warn = to('warn');
  globalThis.console.error = to('error');
  globalThis.console.debug = to('debug');
  globalThis.console.trace = to('trace');
}
