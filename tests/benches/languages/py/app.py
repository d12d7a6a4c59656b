"""json-map in Python, for the `languages` benchmark: parse the JSON event,
add the fields of config `set`, serialise. The same work as plugins/json-map
with config `set = { processed_by = "weir", score = 0.87 }`."""

import weir_stage
from weir_stage import Event, Invalid


class Stage:
    def init(self, config: dict) -> None:
        fields = config.get("set")
        if not isinstance(fields, dict):
            raise Invalid("config.set: expected a table of fields to add")
        self.fields = fields

    def process(self, event: Event) -> Event:
        payload = event.json()
        if not isinstance(payload, dict):
            raise Invalid(f"payload is a JSON {type(payload).__name__}, not an object")
        payload.update(self.fields)
        return event.with_json(payload)


WitWorld = weir_stage.export(Stage)
