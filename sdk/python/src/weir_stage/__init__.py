"""Write weir pipeline stages in Python.

A stage is a class with ``init(self, config)`` and ``process(self, event)``,
exported with one line::

    import weir_stage
    from weir_stage import Event, Invalid

    class AddRegion:
        def init(self, config: dict) -> None:
            self.region = config.get("region", "eu")

        def process(self, event: Event) -> Event | None:
            order = event.json()
            if "id" not in order:
                raise Invalid("missing field \\"id\\"")
            order["region"] = self.region
            return event.with_json(order)

    WitWorld = weir_stage.export(AddRegion)

``process`` returns ``None`` to drop the event, an ``Event`` to replace it,
or a list of events to split it. ``raise Invalid(msg)`` dead-letters it,
``raise Retry(msg)`` asks for a redelivery; any other exception dead-letters
it with the exception's type, message and the line it came from.
``weir_stage.testing`` runs a stage natively, for pytest.
"""

from . import kv, log
from ._component import export
from ._errors import Invalid, Retry, StageError
from ._event import Event

__all__ = ["Event", "Invalid", "Retry", "StageError", "export", "kv", "log"]
__version__ = "0.1.0"
