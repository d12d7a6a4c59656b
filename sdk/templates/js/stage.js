// {{name}}: a weir stage in JavaScript.
//
// It adds a field to every JSON object event: `field` and `value` come from
// the stage's config in pipeline.toml. Events that are not JSON objects are
// dead-lettered with the reason. Change `process` to do your stage's work.
import { Invalid, exportStage, log } from 'weir-stage';

export default class Stage {
  // Called once per instance with the `config` table of pipeline.toml.
  // Check it here: throwing refuses it, and `weir validate` shows why.
  init(config) {
    if (typeof config.field !== 'string' || !config.field) {
      throw new Invalid('config.field: expected the name of the field to set, like field = "team"');
    }
    this.field = config.field;
    this.value = config.value ?? true;
    log.info(`{{name}}: setting ${JSON.stringify(this.field)} on every event`);
  }

  // Return nothing to drop the event, an Event to pass it on (changed or
  // not), an array of events to split it; throw Invalid to dead-letter it.
  process(event) {
    const payload = event.json();
    if (payload === null || typeof payload !== 'object' || Array.isArray(payload)) {
      throw new Invalid(`payload is a JSON ${Array.isArray(payload) ? 'array' : typeof payload}, not an object`);
    }
    payload[this.field] = this.value;
    return event.withJson(payload);
  }
}

// weir calls the module's `init` and `process`: this line makes Stage the component.
export const { init, process } = exportStage(Stage);
