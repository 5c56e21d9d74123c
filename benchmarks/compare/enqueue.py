"""Enqueue django-tasks-db benchmark tasks with Task.enqueue().

Run from the project folder with DJANGO_SETTINGS_MODULE=benchmarks.compare.settings:

    python -m benchmarks.compare.enqueue --count 2000 [--spacing 0.05]

The last line on stdout is a JSON summary with the seconds the enqueues took.
"""

import argparse
import json
import time

import django


def main() -> None:
    parser = argparse.ArgumentParser(description="Enqueue django-tasks-db tasks.")
    parser.add_argument("--count", type=int, required=True, help="Tasks to enqueue.")
    parser.add_argument(
        "--spacing",
        type=float,
        default=0.0,
        help="Seconds between enqueues; 0 enqueues back to back.",
    )
    options = parser.parse_args()

    django.setup()
    from benchmarks.compare.tasks import noop

    started = time.monotonic()
    for index in range(options.count):
        if options.spacing:
            delay = started + index * options.spacing - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        noop.enqueue()
    seconds = time.monotonic() - started
    print(json.dumps({"submitted": options.count, "seconds": round(seconds, 3)}))


if __name__ == "__main__":
    main()
