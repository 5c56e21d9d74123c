"""Sum a py-spy raw profile of `runworker` into where its threads spent their time.

py-spy's raw format has one line per distinct stack: frames separated by ";",
the first being "thread (<id>): <thread name>", then the sample count. The
benchmark records with --idle, so a thread waiting on PostgreSQL or on a queue
is counted too, and the shares are shares of wall-clock time.
"""

from collections import Counter
from pathlib import Path

INLINE_CATEGORIES = (
    # (label, a function name or "name (path" prefix that marks the category)
    ("claim_next (fair claim query)", "claim_next"),
    (
        "queue.complete_many (checked write, hold capture)",
        "complete_many (generation/queue.py",
    ),
    ("adapter.generate", "NoopAdapter.generate"),
    ("rest of JobRunner.run (request, logging)", "JobRunner.run"),
)
GATE_CALLS = {
    "claim_batch": "claim_batch (fair claim query)",
    "complete_many": "queue.complete_many (checked write, hold capture)",
}


def read_stacks(path: Path):
    """Yield (thread name, function frames, sample count) per line of `path`."""
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        thread = frames[0].split(": ", 1)[1] if ": " in frames[0] else frames[0]
        yield thread, frames[1:], int(count)


def _inline_category(frames: list[str]) -> str | None:
    if not any(frame.startswith("Worker._run_inline") for frame in frames):
        return None
    for label, marker in INLINE_CATEGORIES:
        if any(frame.startswith(marker) for frame in frames):
            return label
    return "rest of the worker loop"


def _gate_category(frames: list[str]) -> str | None:
    for index, frame in enumerate(frames):
        if frame.startswith("DatabaseGate._serve"):
            called = ""
            if index + 1 < len(frames):
                called = frames[index + 1].split(" (", 1)[0]
            # py-spy shows a waiting gate thread inside the call queue's get().
            if called in ("", "Queue.get"):
                return "idle, waiting for a call"
            # A batched call runs under _run_batch, one frame further down.
            if called == "DatabaseGate._run_batch" and index + 2 < len(frames):
                called = frames[index + 2].split(" (", 1)[0]
            return GATE_CALLS.get(called, "other calls (leases, heartbeat, ...)")
    return None


def summarize_profile(path: Path, concurrency: int) -> dict:
    """Return the time shares of the thread(s) that do the database work.

    With concurrency 1 the worker runs everything in its main thread. Above 1,
    every query goes through the DatabaseGate's threads ("db-0", "db-1", ...),
    so their time shows where a job's database work waits.
    """
    shares: Counter = Counter()
    threads = "main thread" if concurrency == 1 else "DatabaseGate threads"
    for thread, frames, count in read_stacks(path):
        if concurrency == 1:
            category = _inline_category(frames) if thread == "MainThread" else None
        else:
            category = _gate_category(frames) if thread.startswith("db-") else None
        if category is not None:
            shares[category] += count
    total = sum(shares.values())
    return {
        "threads": threads,
        "samples": total,
        "shares": {label: count / total for label, count in shares.most_common()}
        if total
        else {},
    }
