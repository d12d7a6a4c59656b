"""{{name}}: a weir stage in Python.

It adds a field to every JSON object event: `field` and `value` come from
the stage's config in pipeline.toml. Events that are not JSON objects are
dead-lettered with the reason. Change `process` to do your stage's work.
"""

import weir_stage
from weir_stage import Event, Invalid, log


class Stage:
    def init(self, config: dict) -> None:
        # Called once per instance with the `config` table of pipeline.toml.
        # Check it here: raising refuses it, and `weir validate` shows why.
        self.field = config.get("field")
        if not isinstance(self.field, str) or not self.field:
            raise Invalid('config.field: expected the name of the field to set, like field = "team"')
        self.value = config.get("value", True)
        log.info("{{name}}: setting %r on every event", self.field)

    def process(self, event: Event) -> Event | list[Event] | None:
        # Return None to drop the event, an Event to pass it on (changed or
        # not), a list of events to split it; raise Invalid to dead-letter it.
        payload = event.json()
        if not isinstance(payload, dict):
            raise Invalid(f"payload is a JSON {type(payload).__name__}, not an object")
        payload[self.field] = self.value
        return event.with_json(payload)


# componentize-py looks for `WitWorld`: this line makes Stage the component.
WitWorld = weir_stage.export(Stage)
