"""The DatabaseGate's batched calls and the worker's reused job threads."""

import threading
import time

import pytest

from generation.dbgate import DatabaseGate
from generation.worker import JobThreads


def wait_until(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.001)


@pytest.fixture
def gate():
    gate = DatabaseGate(1)
    yield gate
    gate.close()


def test_batched_items_share_one_call(gate):
    batches = []
    entered, release = threading.Event(), threading.Event()

    def blocker(items: list) -> list:
        entered.set()
        release.wait(5)
        return items

    def double(items: list) -> list:
        batches.append(list(items))
        return [item * 2 for item in items]

    # The only gate thread is busy, so the three items wait together.
    blocking = threading.Thread(target=gate.run_batched, args=(blocker, 0))
    blocking.start()
    assert entered.wait(5)
    results: dict = {}
    callers = [
        threading.Thread(
            target=lambda n=n: results.update({n: gate.run_batched(double, n)})
        )
        for n in (1, 2, 3)
    ]
    for caller in callers:
        caller.start()
    wait_until(lambda: sum(len(items) for items in gate._batches.values()) == 3)
    release.set()
    for thread in (blocking, *callers):
        thread.join(5)

    assert results == {1: 2, 2: 4, 3: 6}
    assert len(batches) == 1
    assert sorted(batches[0]) == [1, 2, 3]


def test_batched_exception_result_raises_in_its_caller(gate):
    def check(items: list) -> list:
        return [ValueError(item) if item < 0 else item for item in items]

    assert gate.run_batched(check, 5) == 5
    with pytest.raises(ValueError, match="-1"):
        gate.run_batched(check, -1)


def test_batched_runs_inline_without_threads():
    gate = DatabaseGate(0)

    def name_thread(items: list) -> list:
        return [threading.current_thread().name for _ in items]

    assert gate.run_batched(name_thread, None) == threading.current_thread().name
    with pytest.raises(KeyError):
        gate.run_batched(lambda items: [KeyError("x") for _ in items], None)


def test_job_threads_reuse_idle_thread():
    threads = JobThreads()
    names = []
    done = threading.Event()

    def record() -> None:
        names.append(threading.current_thread().name)
        done.set()

    for _ in range(3):
        done.clear()
        threads.submit(record)
        assert done.wait(5)
        # The thread counts itself idle again just after the task returns.
        wait_until(lambda: threads._idle == 1)

    assert len(names) == 3
    assert len(set(names)) == 1
    assert threads._started == 1


def test_job_threads_start_one_per_busy_task():
    threads = JobThreads()
    release = threading.Event()
    running = threading.Semaphore(0)

    def block() -> None:
        running.release()
        release.wait(5)

    for _ in range(3):
        threads.submit(block)
    for _ in range(3):
        assert running.acquire(timeout=5)
    release.set()

    assert threads._started == 3
