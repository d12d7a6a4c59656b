"""The event a stage receives and returns."""

from __future__ import annotations

import json as _json
from typing import Any, Iterable, Iterator

from ._errors import Invalid

__all__ = ["Event"]


def _as_bytes(payload: bytes | bytearray | memoryview | str) -> bytes:
    if isinstance(payload, bytes):
        return payload
    if isinstance(payload, str):
        return payload.encode()
    if isinstance(payload, (bytearray, memoryview)):
        return bytes(payload)
    raise TypeError(
        f"an event's payload must be bytes or str, not {type(payload).__name__}; "
        "use Event.from_json(subject, value) or event.with_json(value) for JSON"
    )


def _dumps(value: Any) -> bytes:
    try:
        return _json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
    except (TypeError, ValueError) as error:
        raise Invalid(f"cannot write the payload as JSON: {error}") from None


class Event:
    """One message: a NATS subject, headers and a payload.

    On input, ``subject`` is the subject the message arrived on, ``headers``
    its NATS headers in arrival order as ``(name, value)`` pairs (a name may
    repeat), and ``payload`` its bytes, untouched. On output, the same fields
    describe a message to publish: an output whose subject differs from its
    input's is routed there.

    The ``with_*`` methods return a changed copy and leave the event as it
    is, so they can be chained::

        event.with_json(order).with_header("checked", "yes")
    """

    __slots__ = ("subject", "headers", "payload")

    subject: str
    headers: list[tuple[str, str]]
    payload: bytes

    def __init__(
        self,
        subject: str,
        payload: bytes | str = b"",
        headers: Iterable[tuple[str, str]] | dict[str, str] | None = None,
    ) -> None:
        self.subject = subject
        self.payload = _as_bytes(payload)
        if headers is None:
            self.headers = []
        elif isinstance(headers, dict):
            self.headers = [(str(k), str(v)) for k, v in headers.items()]
        else:
            self.headers = [(str(k), str(v)) for k, v in headers]

    @classmethod
    def from_json(
        cls,
        subject: str,
        value: Any,
        headers: Iterable[tuple[str, str]] | dict[str, str] | None = None,
    ) -> "Event":
        """An event whose payload is ``value`` written as compact JSON."""
        return cls(subject, _dumps(value), headers)

    # Reading

    def json(self) -> Any:
        """The payload parsed as JSON (a new object on every call).

        A payload that is not JSON raises ``Invalid("payload is not valid
        JSON: ...")``, which dead-letters the event with that message.
        """
        try:
            return _json.loads(self.payload)
        except UnicodeDecodeError as error:
            raise Invalid(f"payload is not valid JSON: it is not UTF-8 text ({error.reason} at byte {error.start})") from None
        except ValueError as error:
            raise Invalid(f"payload is not valid JSON: {error}") from None

    @property
    def text(self) -> str:
        """The payload as UTF-8 text; ``Invalid`` if it is not UTF-8."""
        try:
            return self.payload.decode()
        except UnicodeDecodeError as error:
            raise Invalid(f"payload is not valid UTF-8: {error.reason} at byte {error.start}") from None

    def header(self, name: str, default: str | None = None) -> str | None:
        """The value of the first header called ``name`` (exact case, as NATS
        compares them), or ``default``."""
        for n, v in self.headers:
            if n == name:
                return v
        return default

    def header_values(self, name: str) -> list[str]:
        """Every value of the headers called ``name``, in order."""
        return [v for n, v in self.headers if n == name]

    # Changed copies

    def _copy(self, subject: str, headers: list[tuple[str, str]], payload: bytes) -> "Event":
        event = Event.__new__(Event)
        event.subject = subject
        event.headers = headers
        event.payload = payload
        return event

    def with_payload(self, payload: bytes | str) -> "Event":
        """A copy with another payload (``str`` is encoded as UTF-8)."""
        return self._copy(self.subject, list(self.headers), _as_bytes(payload))

    def with_json(self, value: Any) -> "Event":
        """A copy whose payload is ``value`` written as compact JSON."""
        return self._copy(self.subject, list(self.headers), _dumps(value))

    def with_subject(self, subject: str) -> "Event":
        """A copy with another subject: published there, the event is routed."""
        return self._copy(subject, list(self.headers), self.payload)

    def with_header(self, name: str, value: str) -> "Event":
        """A copy with the header ``name`` set to ``value``, replacing every
        header of that name."""
        headers = [(n, v) for n, v in self.headers if n != name]
        headers.append((name, str(value)))
        return self._copy(self.subject, headers, self.payload)

    def add_header(self, name: str, value: str) -> "Event":
        """A copy with one more header, after any of the same name."""
        return self._copy(self.subject, [*self.headers, (name, str(value))], self.payload)

    def without_header(self, name: str) -> "Event":
        """A copy without any header called ``name``."""
        return self._copy(self.subject, [(n, v) for n, v in self.headers if n != name], self.payload)

    # Plumbing

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Event):
            return NotImplemented
        return (
            self.subject == other.subject
            and list(map(tuple, self.headers)) == list(map(tuple, other.headers))
            and self.payload == other.payload
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        headers = f", headers={self.headers!r}" if self.headers else ""
        return f"Event({self.subject!r}, {self.payload!r}{headers})"
