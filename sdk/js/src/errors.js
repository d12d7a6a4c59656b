// Refusing an event: `throw new Invalid(...)` or `throw new Retry(...)`.

/** Base class of the two ways a stage refuses one event. */
export class StageError extends Error {
  constructor(message) {
    super(String(message));
    this.name = new.target.name;
  }
  get kind() {
    return 'invalid';
  }
}

/**
 * This event is bad for this stage (malformed payload, missing field, failed
 * check). weir dead-letters it with this message and never retries it.
 */
export class Invalid extends StageError {
  get kind() {
    return 'invalid';
  }
}

/**
 * A transient failure: a JetStream source redelivers the event later (and
 * dead-letters it once the delivery limit is reached); a core NATS source
 * dead-letters it at once.
 */
export class Retry extends StageError {
  get kind() {
    return 'retry';
  }
}
