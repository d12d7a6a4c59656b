"""Run a stage natively, the way weir would, for pytest.

No WebAssembly, no weir, no NATS: the configuration goes through JSON as in
weir, ``init`` runs once, and each event of a batch gets an ``Outcome``::

    from weir_stage import Event, testing
    from app import AddRegion

    def test_adds_the_region():
        out = testing.run_one(AddRegion, {"region": "us"}, Event("orders", '{"id": 1}'))
        assert out.json() == {"id": 1, "region": "us"}

    def test_refuses_orders_without_id():
        out = testing.run_one(AddRegion, {}, Event("orders", "{}"))
        assert out.invalid == 'missing field "id"'

``testing.start(Stage, config)`` keeps one instance for several batches
(state lives across them, as in weir). ``kv_put`` fills the buckets
``weir_stage.kv`` reads; ``logs()`` returns the lines logged (and printed)
since the last ``start``.
"""

from __future__ import annotations

import contextlib
import io
import json
from typing import Any, Iterable, Iterator

from . import _host
from ._event import Event
from ._runner import InitRefused, Runner

__all__ = [
    "Outcome",
    "Instance",
    "InitError",
    "start",
    "run",
    "run_one",
    "init_error",
    "kv_put",
    "kv_clear",
    "logs",
]


class InitError(AssertionError):
    """``init`` refused the configuration (weir would not start the stage)."""


class Outcome:
    """What became of one input event.

    - ``events``: the outputs (empty when dropped or refused)
    - ``dropped``: ``True`` when the stage returned nothing for it
    - ``invalid`` / ``retry``: the message when refused that way, else ``None``
    - ``kind``: ``"ok"``, ``"invalid"`` or ``"retry"``
    - ``event`` / ``json()``: the one output (an ``AssertionError`` unless
      there is exactly one)
    """

    __slots__ = ("kind", "events", "message")

    def __init__(self, kind: str, events: list[Event], message: str | None) -> None:
        self.kind = kind
        self.events = events
        self.message = message

    @property
    def ok(self) -> bool:
        return self.kind == "ok"

    @property
    def dropped(self) -> bool:
        return self.kind == "ok" and not self.events

    @property
    def invalid(self) -> str | None:
        return self.message if self.kind == "invalid" else None

    @property
    def retry(self) -> str | None:
        return self.message if self.kind == "retry" else None

    @property
    def event(self) -> Event:
        if self.kind != "ok":
            raise AssertionError(f"the event was refused ({self.kind}): {self.message}")
        if len(self.events) != 1:
            raise AssertionError(f"expected exactly one output, got {len(self.events)}: {self.events!r}")
        return self.events[0]

    def json(self) -> Any:
        """The one output's payload, parsed."""
        return self.event.json()

    def __repr__(self) -> str:
        if self.kind == "ok":
            return f"Outcome(ok, {self.events!r})"
        return f"Outcome({self.kind}, {self.message!r})"


def _outcome(raw: tuple[str, Any]) -> Outcome:
    kind, value = raw
    if kind == "ok":
        return Outcome("ok", value, None)
    return Outcome(kind, [], value)


class _Capture(io.TextIOBase):
    def __init__(self, level: str) -> None:
        self.level = level
        self.pending = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        *lines, self.pending = (self.pending + text).split("\n")
        for line in lines:
            _host.log(self.level, line)
        return len(text)

    def flush(self) -> None:
        if self.pending:
            line, self.pending = self.pending, ""
            _host.log(self.level, line)


@contextlib.contextmanager
def _stdio_to_log() -> Iterator[None]:
    # As in weir: print() becomes a log line at info, stderr at warn.
    out, err = _Capture("info"), _Capture("warn")
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            yield
        finally:
            out.flush()
            err.flush()


def _events(events: Iterable[Event]) -> list[Event]:
    events = list(events)
    for i, event in enumerate(events):
        if not isinstance(event, Event):
            raise TypeError(f"event {i} is a {type(event).__name__}, not a weir_stage.Event")
    return events


def _stage_class(stage: Any) -> type:
    # Accept the class, or what weir_stage.export returned for it.
    return getattr(stage, "stage", stage)


class Instance:
    """One instance of a stage after a successful ``init``."""

    def __init__(self, stage: type, config: dict | str | None = None) -> None:
        self._runner = Runner(_stage_class(stage))
        config_json = config if isinstance(config, str) else json.dumps({} if config is None else config)
        _host.captured_logs.clear()
        try:
            with _stdio_to_log():
                self._runner.init(config_json)
        except InitRefused as refused:
            raise InitError(f"init refused the config: {refused}") from None

    @property
    def stage(self) -> Any:
        """The stage object itself, to look at its state."""
        return self._runner.stage

    def process(self, events: Iterable[Event]) -> list[Outcome]:
        """Runs one batch; one ``Outcome`` per event, in order."""
        with _stdio_to_log():
            return [_outcome(raw) for raw in self._runner.process(_events(events))]

    def process_one(self, event: Event) -> Outcome:
        return self.process([event])[0]


def start(stage: type, config: dict | str | None = None) -> Instance:
    """Creates an instance and runs its ``init`` with ``config`` (a dict, or
    JSON text); raises ``InitError`` if it refuses."""
    return Instance(stage, config)


def run(stage: type, config: dict | str | None, events: Iterable[Event]) -> list[Outcome]:
    """``init`` with ``config``, then one batch of ``events``."""
    return start(stage, config).process(events)


def run_one(stage: type, config: dict | str | None, event: Event) -> Outcome:
    """``init`` with ``config``, then one event."""
    return start(stage, config).process_one(event)


def init_error(stage: type, config: dict | str | None = None) -> str | None:
    """The message with which ``init`` refuses ``config``, or ``None`` if it
    accepts it."""
    try:
        start(stage, config)
    except InitError as error:
        return str(error).removeprefix("init refused the config: ")
    return None


def kv_put(bucket: str, key: str, value: bytes | str | Any) -> None:
    """Puts a value where ``weir_stage.kv`` reads it natively. Bytes and
    strings are stored as they are; anything else is written as JSON."""
    if isinstance(value, str):
        value = value.encode()
    elif not isinstance(value, (bytes, bytearray)):
        value = json.dumps(value).encode()
    _host.test_store.setdefault(bucket, {})[key] = bytes(value)


def kv_clear() -> None:
    """Empties every bucket: they all count as not granted again."""
    _host.test_store.clear()


def logs() -> list[tuple[str, str]]:
    """The ``(level, message)`` lines logged or printed since the last
    ``start``."""
    return list(_host.captured_logs)
