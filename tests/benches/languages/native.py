"""The Python json-map stage (py/app.py) run natively in CPython through the
SDK's test harness (weir_stage.testing), timed here over the same events as
the wasm runs. Called by tests/benches/languages.rs:

    python native.py STAGE_DIR EVENTS_FILE CONFIG_JSON BATCH ROUNDS

EVENTS_FILE holds one payload per line. Prints one line,
`ns_per_event=BEST mean=MEAN python=VERSION`: the best and the mean round.
"""

import platform
import sys
import time


def main() -> None:
    stage_dir, events_file, config, batch, rounds = sys.argv[1:6]
    batch, rounds = int(batch), int(rounds)
    sys.path.insert(0, stage_dir)
    from weir_stage import Event, testing

    from app import Stage

    with open(events_file, "rb") as f:
        payloads = [line.rstrip(b"\n") for line in f if line.strip()]
    events = [Event("tracking.product.viewed", p) for p in payloads]
    batches = [events[i : i + batch] for i in range(0, len(events), batch)]
    instance = testing.start(Stage, config)

    def one_round() -> int:
        started = time.perf_counter_ns()
        for b in batches:
            outcomes = instance.process(b)
        elapsed = time.perf_counter_ns() - started
        assert outcomes[-1].ok and len(outcomes[-1].events) == 1, outcomes[-1]
        return elapsed

    one_round()  # warm-up
    times = [one_round() for _ in range(rounds)]
    n = len(events)
    print(f"ns_per_event={min(times) / n:.1f} mean={sum(times) / len(times) / n:.1f} python={platform.python_version()}")


if __name__ == "__main__":
    main()
