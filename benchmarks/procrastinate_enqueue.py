"""Defer procrastinate no-op jobs for the worker benchmark.

    python -m benchmarks.procrastinate_enqueue --count 2000 [--spacing 0.05]

The last line on stdout is a JSON summary with the seconds the defers took.
"""

import argparse
import json
import time

from benchmarks.procrastinate_app import app, noop

# At most this many jobs go into one batch_defer call, one INSERT statement.
BATCH_SIZE = 500


def defer_all(count: int, spacing: float) -> float:
    """Defer `count` no-op jobs and return the seconds taken.

    With `spacing` above 0 each job is deferred alone, job N `spacing` * N
    seconds after the first. Otherwise they go in batches of BATCH_SIZE.
    """
    started = time.monotonic()
    with app.open():
        if not spacing:
            for first in range(0, count, BATCH_SIZE):
                size = min(BATCH_SIZE, count - first)
                noop.batch_defer(*({} for _ in range(size)))
            return time.monotonic() - started

        for index in range(count):
            delay = started + index * spacing - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            noop.defer()
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description="Defer procrastinate no-op jobs.")
    parser.add_argument("--count", type=int, required=True, help="Jobs to defer.")
    parser.add_argument(
        "--spacing",
        type=float,
        default=0.0,
        help="Seconds between defers; 0 defers in batches.",
    )
    options = parser.parse_args()
    seconds = defer_all(options.count, options.spacing)
    print(json.dumps({"submitted": options.count, "seconds": round(seconds, 3)}))


if __name__ == "__main__":
    main()
