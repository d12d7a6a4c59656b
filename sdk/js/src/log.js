// Lines into weir's log, tagged with the pipeline and the stage.
import { log as hostLog } from '#host';
import { format } from './format.js';

const LEVELS = ['trace', 'debug', 'info', 'warn', 'error'];

export function log(level, ...args) {
  if (level === 'warning') level = 'warn';
  if (!LEVELS.includes(level)) throw new TypeError(`unknown log level ${JSON.stringify(level)}: use one of ${LEVELS.join(', ')}`);
  hostLog(level, format(args));
}

export const trace = (...args) => log('trace', ...args);
export const debug = (...args) => log('debug', ...args);
export const info = (...args) => log('info', ...args);
export const warn = (...args) => log('warn', ...args);
export const error = (...args) => log('error', ...args);
