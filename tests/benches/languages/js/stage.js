// json-map in JavaScript, for the `languages` benchmark: parse the JSON
// event, add the fields of config `set`, serialise. The same work as
// plugins/json-map with config `set = { processed_by = "weir", score = 0.87 }`.
import { Invalid, exportStage } from 'weir-stage';

export default class Stage {
  init(config) {
    if (config.set === null || typeof config.set !== 'object' || Array.isArray(config.set)) {
      throw new Invalid('config.set: expected a table of fields to add');
    }
    this.fields = config.set;
  }

  process(event) {
    const payload = event.json();
    if (payload === null || typeof payload !== 'object' || Array.isArray(payload)) {
      throw new Invalid(`payload is a JSON ${Array.isArray(payload) ? 'array' : typeof payload}, not an object`);
    }
    Object.assign(payload, this.fields);
    return event.withJson(payload);
  }
}

export const { init, process } = exportStage(Stage);
