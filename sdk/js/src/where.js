// Where an error came from: the innermost stack frame in the stage's own
// code (not in this SDK, not in node_modules, not in node itself).
//
// Natively (V8) a frame reads `    at Traffic.process (file:///p/stage.js:12:15)`.
// Inside weir (SpiderMonkey) it reads `process@stage.bundle.js:120:12`, a
// line of the bundle that `weir build` made; the build appends a line table
// (globalThis.__weirLines) that maps it back to the file and line written.

// This file's directory, from a stack trace (import.meta is not available
// inside componentize-js's engine): frames from here are the SDK's.
const SDK_DIR = (() => {
  const m = /(?:\(|@|at )((?:file:\/\/)?\/[^\s()]*\/)[^/\s()]+\.js:\d+:\d+/.exec(String(new Error().stack));
  return m ? m[1].replace(/^file:\/\//, '') : '\0';
})();

const V8 = /^\s*at (?:.*? \()?(.*?):(\d+):(\d+)\)?$/;
const SPIDERMONKEY = /^[^@]*@(.*?):(\d+):(\d+)$/;

function frames(stack) {
  const out = [];
  for (const line of String(stack).split('\n')) {
    const m = V8.exec(line) ?? SPIDERMONKEY.exec(line);
    if (m) out.push({ file: m[1], line: Number(m[2]) });
  }
  return out;
}

function mapped(frame) {
  const table = globalThis.__weirLines;
  if (!table || !frame.file.endsWith(table.file)) return frame;
  const entry = table.lines[frame.line - 1];
  if (entry === undefined || entry < 0) return null;
  const source = entry >> 20;
  return { file: table.sources[source], line: entry & 0xfffff, sdk: table.sdk[source] === 1 };
}

function isUserCode(frame) {
  if (frame.sdk) return false;
  const file = frame.file.replace(/^file:\/\//, '');
  if (file.startsWith('node:') || file.includes('/node_modules/') || file.startsWith('node_modules/')) return false;
  if (file.startsWith(SDK_DIR)) return false;
  return true;
}

function basename(file) {
  const clean = file.replace(/^file:\/\//, '');
  return clean.slice(clean.lastIndexOf('/') + 1);
}

/** `stage.js:12`, or undefined when the stack says nothing usable. */
export function whereFrom(error) {
  if (!error || typeof error.stack !== 'string') return undefined;
  for (const raw of frames(error.stack)) {
    const frame = mapped(raw);
    if (frame && isUserCode(frame)) return `${basename(frame.file)}:${frame.line}`;
  }
  return undefined;
}

/** `TypeError: x is undefined (at stage.js:12)` */
export function describe(error) {
  if (!(error instanceof Error)) {
    let shown;
    try {
      shown = typeof error === 'string' ? JSON.stringify(error) : String(error);
    } catch {
      shown = typeof error;
    }
    return `threw ${shown}, which is not an Error (throw new Invalid(message) to refuse an event)`;
  }
  const message = error.message ? `${error.name}: ${error.message}` : error.name;
  const where = whereFrom(error);
  return where ? `${message} (at ${where})` : message;
}
