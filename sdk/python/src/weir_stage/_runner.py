"""What weir does with a stage class, in plain Python.

The component's exports and the native test harness both go through a
``Runner``: the configuration arrives as JSON text, ``init`` runs once, and
each batch gives one outcome per event. So a test sees exactly what weir
would publish or dead-letter.

An outcome is a tuple: ``("ok", [Event, ...])``, ``("invalid", message)`` or
``("retry", message)``.
"""

from __future__ import annotations

import json
import linecache
import os
import traceback
from typing import Any

from . import kv as _kv
from ._errors import StageError
from ._event import Event

_SDK_DIR = os.path.dirname(os.path.abspath(__file__))
_STDLIB_DIR = os.path.dirname(os.path.abspath(os.__file__))

Outcome = tuple[str, Any]

_EXPECTED = "return None (drop the event), an Event (map), or a list of Events (split)"


def _user_frame(tb: Any) -> traceback.FrameSummary | None:
    """The innermost frame of the traceback that is in the stage's own code:
    not in this SDK, not in the standard library."""
    frames = traceback.extract_tb(tb)
    for frame in reversed(frames):
        path = os.path.abspath(frame.filename)
        if path.startswith(_SDK_DIR + os.sep) or path.startswith(_STDLIB_DIR + os.sep):
            continue
        if frame.filename.startswith("<"):
            continue
        return frame
    return frames[-1] if frames else None


def _where(frame: traceback.FrameSummary) -> str:
    # The file's name, not its whole path: the path is the build machine's.
    where = f"{os.path.basename(frame.filename)}:{frame.lineno}, in {frame.name}"
    line = frame.line or linecache.getline(frame.filename, frame.lineno or 0).strip()
    if line:
        where += f": {line}"
    return where


def describe(error: BaseException) -> str:
    """``ZeroDivisionError: division by zero (at app.py:12, in process: x = 1 / n)``"""
    name = type(error).__name__
    text = str(error)
    message = f"{name}: {text}" if text else name
    frame = _user_frame(error.__traceback__)
    if frame is not None:
        message += f" (at {_where(frame)})"
    return message


def _short(value: Any) -> str:
    shown = repr(value)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return f"{type(value).__name__} {shown}"


def _wrong_type(value: Any, what: str) -> str:
    return f"{what} returned {_short(value)}; {_EXPECTED}"


def normalize(result: Any, what: str = "process") -> Outcome:
    """One event's outcome from what the stage returned for it."""
    if result is None:
        return ("ok", [])
    if isinstance(result, Event):
        return ("ok", [result])
    if isinstance(result, (list, tuple)):
        for item in result:
            if not isinstance(item, Event):
                return ("invalid", f"{what} returned a list holding {_short(item)}; a list may hold only Events ({_EXPECTED})")
        return ("ok", list(result))
    if isinstance(result, StageError):
        return (result.kind, result.message)
    return ("invalid", _wrong_type(result, what))


def _from_exception(error: Exception) -> Outcome:
    if isinstance(error, StageError):
        return (error.kind, error.message)
    return ("invalid", describe(error))


class InitRefused(Exception):
    """``init`` refused the configuration; the message is what weir shows."""


class Runner:
    """One instance of a stage, as weir runs it."""

    def __init__(self, stage_class: type) -> None:
        if not isinstance(stage_class, type):
            raise TypeError(
                f"weir_stage.export() takes the stage's class, not {type(stage_class).__name__}: "
                "write `WitWorld = weir_stage.export(MyStage)`"
            )
        self.stage_class = stage_class
        self.stage: Any = None
        has_batch = callable(getattr(stage_class, "process_batch", None))
        has_one = callable(getattr(stage_class, "process", None))
        if not has_batch and not has_one:
            raise TypeError(f"{stage_class.__name__} has neither process(self, event) nor process_batch(self, events)")
        self.batched = has_batch

    def init(self, config_json: str) -> None:
        """Creates the stage and runs its ``init``; raises ``InitRefused``."""
        try:
            config = json.loads(config_json) if config_json else {}
        except ValueError as error:
            raise InitRefused(f"config is not valid JSON: {error}") from None
        self.stage = None
        try:
            stage = self.stage_class()
            init = getattr(stage, "init", None)
            if init is not None:
                init(config)
        except MemoryError:
            raise
        except StageError as error:
            raise InitRefused(error.message) from None
        except Exception as error:
            raise InitRefused(describe(error)) from None
        self.stage = stage

    def process(self, events: list[Event]) -> list[Outcome]:
        stage = self.stage
        if stage is None:
            # weir always calls init first; a failed init refuses the stage.
            raise RuntimeError("weir_stage: process was called before a successful init")
        _kv._begin_batch()
        if self.batched:
            return self._batch(stage, events)
        process = stage.process
        outcomes: list[Outcome] = []
        append = outcomes.append
        for event in events:
            try:
                result = process(event)
            except MemoryError:
                raise
            except Exception as error:
                append(_from_exception(error))
                continue
            # The common cases first, without a call.
            if result.__class__ is Event:
                append(("ok", [result]))
            elif result is None:
                append(("ok", []))
            else:
                append(normalize(result))
        return outcomes

    def _batch(self, stage: Any, events: list[Event]) -> list[Outcome]:
        try:
            results = stage.process_batch(events)
        except MemoryError:
            raise
        except Exception as error:
            if len(events) <= 1:
                return [_from_exception(error)] * len(events)
            # As weir does after a fault: each event alone, so that only the
            # one that raises is refused.
            outcomes = []
            for event in events:
                outcomes.extend(self._batch(stage, [event]))
            return outcomes
        if not isinstance(results, (list, tuple)):
            message = (
                f"process_batch returned {type(results).__name__}; it must return a list "
                f"with one entry per event (each: None, an Event, a list of Events, or an Invalid/Retry)"
            )
            return [("invalid", message)] * len(events)
        if len(results) != len(events):
            message = (
                f"process_batch returned {len(results)} results for a batch of {len(events)} events; "
                "it must return exactly one per event, in order (None to drop one)"
            )
            return [("invalid", message)] * len(events)
        return [normalize(result, "process_batch") for result in results]
