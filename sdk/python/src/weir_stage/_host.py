"""The two host calls, inside weir or natively.

Inside the component, componentize-py's generated bindings (the
``wit_world`` module) exist and these call weir. Natively (pytest) they do
not, and the calls go to the test store and stderr, so that the same stage
code runs in both places.
"""

from __future__ import annotations

import sys

try:  # Only inside the WebAssembly component.
    from wit_world.imports import host as _wit_host  # type: ignore[import-not-found]
    from componentize_py_types import Err as _Err  # type: ignore[import-not-found]
except ImportError:  # Native: pytest, a REPL.
    _wit_host = None
    _Err = None

IN_WEIR = _wit_host is not None

LEVELS = ("trace", "debug", "info", "warn", "error")

# Native only: what a test put into KV, and the lines logged (for
# assertions in weir_stage.testing).
test_store: dict[str, dict[str, bytes]] = {}
captured_logs: list[tuple[str, str]] = []
# Native only: echo log lines to stderr (the testing harness turns it off
# while it captures them).
echo = True

if IN_WEIR:
    _LEVEL = {name: getattr(_wit_host.Level, name.upper()) for name in LEVELS}

    def log(level: str, message: str) -> None:
        _wit_host.log(_LEVEL[level], message)

    def kv_get(bucket: str, key: str) -> bytes | None:
        """Raises ``LookupError(message)`` when weir refuses the read."""
        try:
            return _wit_host.kv_get(bucket, key)
        except _Err as error:
            raise LookupError(error.value) from None

else:

    def log(level: str, message: str) -> None:
        captured_logs.append((level, message))
        if echo:
            sys.__stderr__.write(f"[{level.upper()}] {message}\n")

    def kv_get(bucket: str, key: str) -> bytes | None:
        entries = test_store.get(bucket)
        if entries is None:
            raise LookupError(
                f'KV bucket "{bucket}" is not granted to this stage '
                "(in a native test: put something into it first with weir_stage.testing.kv_put)"
            )
        return entries.get(key)
