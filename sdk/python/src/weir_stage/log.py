"""Logging into weir's log.

Lines end up in weir's own log, tagged with the pipeline and the stage::

    from weir_stage import log
    log.info("loaded %d rules", len(rules))
    log.warn(f"order {order_id} has no country")

With arguments, the message is ``message % args`` (as the ``logging``
module does). weir may drop lines from a stage that logs faster than its
rate limit (a burst of 200 lines, then 100 a second per instance), so do
not log every event at ``info`` in a busy pipeline.

``print()`` works too: inside weir, what a stage writes to ``sys.stdout``
goes to weir's log at ``info``, and ``sys.stderr`` at ``warn``, one line per
line. Natively (pytest) these functions print ``[LEVEL] message`` to
stderr, and ``weir_stage.testing`` collects them.
"""

from __future__ import annotations

from . import _host

__all__ = ["trace", "debug", "info", "warn", "warning", "error", "log"]


def log(level: str, message: object, *args: object) -> None:
    """Logs at ``level``: one of trace, debug, info, warn, error."""
    if level == "warning":
        level = "warn"
    if level not in _host.LEVELS:
        raise ValueError(f"unknown log level {level!r}: use one of {', '.join(_host.LEVELS)}")
    text = str(message)
    if args:
        text = text % args
    _host.log(level, text)


def trace(message: object, *args: object) -> None:
    log("trace", message, *args)


def debug(message: object, *args: object) -> None:
    log("debug", message, *args)


def info(message: object, *args: object) -> None:
    log("info", message, *args)


def warn(message: object, *args: object) -> None:
    log("warn", message, *args)


warning = warn


def error(message: object, *args: object) -> None:
    log("error", message, *args)
