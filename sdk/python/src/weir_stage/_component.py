"""The component's exports: what componentize-py calls.

componentize-py creates a new ``WitWorld`` object for every exported call,
so nothing may live on it: the stage instance lives in this module's
``_runner``, for as long as the component instance.
"""

from __future__ import annotations

import io
import sys

from . import _host
from ._event import Event
from ._runner import InitRefused, Runner

if _host.IN_WEIR:
    from componentize_py_types import Err, Ok  # type: ignore[import-not-found]
    from wit_world import WitWorld as _WitWorldProtocol  # type: ignore[import-not-found]
    from wit_world.imports.types import StageError_Invalid, StageError_Retry  # type: ignore[import-not-found]
else:
    _WitWorldProtocol = object

_runner: Runner | None = None


class _LogStream(io.TextIOBase):
    """sys.stdout / sys.stderr inside weir: each line becomes a log line."""

    def __init__(self, level: str, name: str) -> None:
        self._level = level
        self._name = name
        self._pending = ""

    @property
    def name(self) -> str:
        return self._name

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        data = self._pending + text
        *lines, self._pending = data.split("\n")
        for line in lines:
            _host.log(self._level, line)
        if len(self._pending) > 4096:
            self.flush()
        return len(text)

    def flush(self) -> None:
        if self._pending:
            line, self._pending = self._pending, ""
            _host.log(self._level, line)


def _route_stdio() -> None:
    if not isinstance(sys.stdout, _LogStream):
        sys.stdout = _LogStream("info", "<stdout>")
        sys.stderr = _LogStream("warn", "<stderr>")


def _flush_stdio() -> None:
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, _LogStream):
            stream.flush()


def _to_event(event: object) -> Event:
    e = Event.__new__(Event)
    e.subject = event.subject  # type: ignore[attr-defined]
    e.headers = event.headers  # type: ignore[attr-defined]
    e.payload = event.payload  # type: ignore[attr-defined]
    return e


def export(stage_class: type) -> type:
    """Exports a stage class as the component's implementation of weir's
    ``stage`` world. Use it once, in the app module::

        WitWorld = weir_stage.export(MyStage)

    componentize-py looks for the name ``WitWorld``. Natively the returned
    class does nothing on its own; ``weir_stage.testing`` runs the stage.
    """
    global _runner
    runner = Runner(stage_class)
    _runner = runner

    class WitWorld(_WitWorldProtocol):  # type: ignore[misc, valid-type]
        stage = stage_class

        def init(self, config: str) -> None:
            _route_stdio()
            try:
                runner.init(config)
            except InitRefused as refused:
                raise Err(str(refused)) from None
            finally:
                _flush_stdio()

        def process(self, events: list) -> list:
            try:
                outcomes = runner.process([_to_event(e) for e in events])
            finally:
                _flush_stdio()
            results = []
            append = results.append
            for kind, value in outcomes:
                if kind == "ok":
                    append(Ok(value))
                elif kind == "invalid":
                    append(Err(StageError_Invalid(value)))
                else:
                    append(Err(StageError_Retry(value)))
            return results

    WitWorld.__name__ = WitWorld.__qualname__ = "WitWorld"
    WitWorld.__doc__ = f"weir's stage world, implemented by {stage_class.__name__}."
    return WitWorld
