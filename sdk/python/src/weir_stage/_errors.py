"""Refusing an event: ``raise Invalid(...)`` or ``raise Retry(...)``."""

__all__ = ["StageError", "Invalid", "Retry"]


class StageError(Exception):
    """Base class of the two ways a stage refuses one event."""

    kind = "invalid"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = str(message)

    def __str__(self) -> str:
        return self.message


class Invalid(StageError):
    """This event is bad for this stage (malformed payload, missing field,
    failed check). weir dead-letters it with this message and never retries
    it. The other events of the batch go on."""

    kind = "invalid"


class Retry(StageError):
    """A transient failure (a dependency was unavailable). On a JetStream
    source weir redelivers the event later, and dead-letters it with this
    message once the delivery limit is reached; on a core NATS source it is
    dead-lettered at once."""

    kind = "retry"
