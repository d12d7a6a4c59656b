"""Reading NATS KV buckets.

A stage may read the buckets its pipeline TOML grants it
(``grants = { kv = ["shops"] }`` on the stage). weir mirrors each granted
bucket in memory through a KV watch, so a read is local, and an update made
with any NATS client is seen within about a second, without a reload::

    from weir_stage import kv
    shop = kv.get_json("shops", event.header("shop", "")) or {}

A bucket that was not granted (or that weir has no copy of: ``weir exec``
without ``--kv``) raises ``Invalid`` with weir's reason, which dead-letters
the event: it is a configuration mistake, not a transient failure.

Within one batch, a key is read from weir once: later reads of it in the
same ``process`` call come from the stage's own memory, so a batch sees one
snapshot of each key and the next batch sees updates.

Natively (pytest), the reads come from what ``weir_stage.testing.kv_put``
stored; a bucket nothing was put into counts as not granted.
"""

from __future__ import annotations

import json as _json
from typing import Any

from . import _host
from ._errors import Invalid

__all__ = ["get", "get_json", "get_text"]

# bucket -> key -> value, for the current batch (cleared by the runner).
_batch: dict[str, dict[str, bytes | None]] = {}


def _begin_batch() -> None:
    _batch.clear()


def get(bucket: str, key: str) -> bytes | None:
    """The value of ``key`` in ``bucket`` as bytes, or ``None`` if the key is
    absent (or deleted)."""
    keys = _batch.get(bucket)
    if keys is not None and key in keys:
        return keys[key]
    try:
        value = _host.kv_get(bucket, key)
    except LookupError as error:
        raise Invalid(str(error.args[0] if error.args else error)) from None
    if value is not None and not isinstance(value, bytes):
        value = bytes(value)
    _batch.setdefault(bucket, {})[key] = value
    return value


def get_text(bucket: str, key: str) -> str | None:
    """The value as UTF-8 text, or ``None``."""
    value = get(bucket, key)
    if value is None:
        return None
    try:
        return value.decode()
    except UnicodeDecodeError as error:
        raise Invalid(f"kv value {bucket}/{key} is not valid UTF-8: {error.reason} at byte {error.start}") from None


def get_json(bucket: str, key: str) -> Any:
    """The value parsed as JSON, or ``None`` if the key is absent. A value
    that is not JSON raises ``Invalid`` naming the bucket and key."""
    value = get(bucket, key)
    if value is None:
        return None
    try:
        return _json.loads(value)
    except ValueError as error:
        raise Invalid(f"kv value {bucket}/{key} is not valid JSON: {error}") from None
