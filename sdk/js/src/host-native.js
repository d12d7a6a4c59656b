// The host calls outside weir (node --test): a test KV store, and log lines
// printed to stderr and collected for weir-stage/testing.

export const IN_WEIR = false;

export const testStore = new Map();
export const capturedLogs = [];
export const settings = { echo: true };

export function log(level, message) {
  capturedLogs.push([level, message]);
  if (settings.echo) process.stderr.write(`[${level.toUpperCase()}] ${message}\n`);
}

export function kvGet(bucket, key) {
  const entries = testStore.get(bucket);
  if (entries === undefined) {
    throw new Error(
      `KV bucket "${bucket}" is not granted to this stage ` +
        '(in a native test: put something into it first with kvPut from weir-stage/testing)',
    );
  }
  return entries.get(key);
}

// Natively console.* already print; weir-stage/testing collects them itself.
export function routeConsole() {}
