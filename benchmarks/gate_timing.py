"""Run `runworker`'s Worker in this process and time every DatabaseGate call.

For each function handed to the gate (through `run`, or `run_first` where the
gate has it) it records how long the call waited in the gate's queue and how
long it then ran on a gate thread. Run from the
project folder with DJANGO_SETTINGS_MODULE=lightsource.settings:

    python -m benchmarks.gate_timing --concurrency 200

The worker runs in burst mode until the queue is empty. The last line on
stdout is a JSON summary: wall seconds and, per function, the call count and
the p50, p99 and total of both times in seconds.
"""

import argparse
import json
import threading
import time
from collections import defaultdict

import django


def summarize(values: list[float]) -> dict:
    ordered = sorted(values)

    def at(fraction: float) -> float:
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]

    return {"p50": at(0.5), "p99": at(0.99), "total": sum(ordered)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--concurrency", type=int, required=True, help="Jobs in flight per queue."
    )
    options = parser.parse_args()

    django.setup()
    from generation.dbgate import DatabaseGate
    from generation.worker import Worker

    waits: dict[str, list[float]] = defaultdict(list)
    runs: dict[str, list[float]] = defaultdict(list)
    lock = threading.Lock()

    def timed(original):
        def timed_call(gate, function, *args, **kwargs):
            name = getattr(function, "__name__", type(function).__name__)
            queued_at = time.perf_counter()
            started = {}

            def call(*call_args, **call_kwargs):
                started["at"] = time.perf_counter()
                return function(*call_args, **call_kwargs)

            try:
                return original(gate, call, *args, **kwargs)
            finally:
                ended_at = time.perf_counter()
                started_at = started.get("at", ended_at)
                with lock:
                    waits[name].append(started_at - queued_at)
                    runs[name].append(ended_at - started_at)

        return timed_call

    for method in ("run", "run_first"):
        if hasattr(DatabaseGate, method):
            setattr(DatabaseGate, method, timed(getattr(DatabaseGate, method)))
    worker = Worker(burst=True, concurrency=options.concurrency)
    began = time.perf_counter()
    worker.run()
    wall = time.perf_counter() - began

    calls = {
        name: {
            "count": len(runs[name]),
            "wait": summarize(waits[name]),
            "run": summarize(runs[name]),
        }
        for name in sorted(runs, key=lambda name: -sum(runs[name]))
    }
    print(json.dumps({"wall_seconds": wall, "calls": calls}))


if __name__ == "__main__":
    main()
