"""Run `runworker`'s Worker in this process and time every DatabaseGate call.

For each function handed to the gate (through `run`, or `run_first` and
`run_batched` where the gate has them) it records how long the call waited in
the gate's queue and how long it then ran on a gate thread. Run from the
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

    # A batched call runs once for all the items that waited for it, so each
    # item's run time is that whole call's. The gate groups items by function,
    # so each function gets one timing wrapper that every caller shares.
    wrappers: dict = {}
    spans: dict[int, tuple[float, float]] = {}

    def batch_wrapper(function):
        def timed_batch(items: list) -> list:
            began = time.perf_counter()
            try:
                return function(items)
            finally:
                ended = time.perf_counter()
                with lock:
                    for item in items:
                        spans[id(item)] = (began, ended)

        return wrappers.setdefault(function, timed_batch)

    def timed_batched(original):
        def timed_call(gate, function, item):
            queued_at = time.perf_counter()
            try:
                return original(gate, batch_wrapper(function), item)
            finally:
                now = time.perf_counter()
                with lock:
                    began, ended = spans.pop(id(item), (now, now))
                    waits[function.__name__].append(began - queued_at)
                    runs[function.__name__].append(ended - began)

        return timed_call

    for method in ("run", "run_first"):
        if hasattr(DatabaseGate, method):
            setattr(DatabaseGate, method, timed(getattr(DatabaseGate, method)))
    if hasattr(DatabaseGate, "run_batched"):
        DatabaseGate.run_batched = timed_batched(DatabaseGate.run_batched)
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
