// Write weir pipeline stages in JavaScript.
//
//   import { Event, Invalid, exportStage } from 'weir-stage';
//
//   export default class AddRegion {
//     init(config) { this.region = config.region ?? 'eu'; }
//     process(event) {
//       const order = event.json();
//       if (order.id === undefined) throw new Invalid('missing field "id"');
//       return event.withJson({ ...order, region: this.region });
//     }
//   }
//
//   export const { init, process } = exportStage(AddRegion);
import { Event } from './event.js';
import { Invalid, Retry, StageError } from './errors.js';
import { Runner, InitRefused } from './runner.js';
import { routeConsole } from '#host';
import * as kv from './kv.js';
import * as log from './log.js';

export { Event, Invalid, Retry, StageError, kv, log };

/**
 * Exports a stage (its class, or an object with `init`/`process`) as the
 * component's `init` and `process`:
 *
 *   export const { init, process } = exportStage(MyStage);
 *
 * The stage object lives as long as the component instance.
 */
export function exportStage(stage) {
  const runner = new Runner(stage);
  return {
    stage,
    init(config) {
      routeConsole();
      try {
        runner.init(config);
        return { tag: 'ok', val: undefined };
      } catch (error) {
        if (error instanceof InitRefused) return { tag: 'err', val: error.message };
        throw error;
      }
    },
    process(rawEvents) {
      const events = new Array(rawEvents.length);
      for (let i = 0; i < rawEvents.length; i++) events[i] = Event._wrap(rawEvents[i]);
      const outcomes = runner.process(events);
      const results = new Array(outcomes.length);
      for (let i = 0; i < outcomes.length; i++) {
        const [kind, value] = outcomes[i];
        results[i] = kind === 'ok' ? { tag: 'ok', val: value } : { tag: 'err', val: { tag: kind, val: value } };
      }
      return results;
    },
  };
}
