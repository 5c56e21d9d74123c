"""Run every database call of a worker on a few threads, so connections stay few.

Django opens one connection per thread. A worker with 200 jobs in flight has 200
job threads, so job threads never touch the ORM themselves: they hand each
database call to the gate and wait for its result.
"""

import itertools
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from django.db import DatabaseError, close_old_connections, connection
from django.utils import translation

T = TypeVar("T")

# Claims and lease checks go before job writes: a burst of finishing jobs must
# not delay refilling the free slots or noticing a cancel.
CONTROL_CALL, JOB_CALL, STOP = 0, 1, 2
BatchFunction = Callable[[list], list]
# How often a gate thread lets Django drop a connection that is too old or broken.
STALE_CHECK_SECONDS = 30.0


class DatabaseGate:
    """Runs callables on `threads` dedicated threads; 0 runs them in the caller."""

    def __init__(self, threads: int) -> None:
        self.threads = threads
        self._calls: queue.PriorityQueue = queue.PriorityQueue()
        self._order = itertools.count()
        self._batch_lock = threading.Lock()
        self._batches: dict[BatchFunction, list[tuple[Future, Any]]] = {}
        self._workers = [
            threading.Thread(target=self._serve, name=f"db-{i}", daemon=True)
            for i in range(threads)
        ]
        for worker in self._workers:
            worker.start()

    def run(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Call `function` on a gate thread and return its result or raise its error."""
        return self._call(JOB_CALL, function, args, kwargs)

    def run_first(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Like run(), but ahead of queued job calls: for claims and lease checks."""
        return self._call(CONTROL_CALL, function, args, kwargs)

    def run_batched(self, function: BatchFunction, item: Any) -> Any:
        """Hand `item` to one call of `function` with all items waiting for it.

        `function` takes a list of items and returns one result per item, in
        order. A result that is an exception is raised in its own caller, and an
        exception that `function` raises is raised in every caller of the batch.
        Items handed in while a batch runs wait for the next call, so a burst of
        completions costs a few transactions instead of one each.
        """
        if not self.threads:
            return _unwrap(function([item])[0])

        future: Future = Future()
        with self._batch_lock:
            waiting = self._batches.setdefault(function, [])
            waiting.append((future, item))
            first = len(waiting) == 1
        if first:
            # The batch runs in the language of the call that started it, and
            # its callers wait on their own futures, not on this call's.
            self._enqueue(JOB_CALL, self._run_batch, (function,), {})
        return future.result()

    def _run_batch(self, function: BatchFunction) -> None:
        with self._batch_lock:
            waiting = self._batches.pop(function, [])
        futures = [future for future, _ in waiting]
        try:
            results = function([item for _, item in waiting])
        except BaseException as error:
            for future in futures:
                future.set_exception(error)
            raise
        for future, result in zip(futures, results, strict=True):
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)

    def _call(self, priority: int, function, args, kwargs):
        if not self.threads:
            return function(*args, **kwargs)
        return self._enqueue(priority, function, args, kwargs).result()

    def _enqueue(self, priority: int, function, args, kwargs) -> Future:
        # The caller's language goes along, so a message made on a gate thread
        # is in the job owner's language.
        future: Future = Future()
        call = (future, function, args, kwargs, translation.get_language())
        self._calls.put((priority, next(self._order), call))
        return future

    def close(self) -> None:
        """Close the gate threads' connections and stop them."""
        for _ in self._workers:
            self._calls.put((STOP, next(self._order), None))
        for worker in self._workers:
            worker.join(timeout=5)

    def _serve(self) -> None:
        checked_at = time.monotonic()
        while (call := self._calls.get()[2]) is not None:
            if time.monotonic() - checked_at > STALE_CHECK_SECONDS:
                close_old_connections()
                checked_at = time.monotonic()
            future, function, args, kwargs, language = call
            if not future.set_running_or_notify_cancel():
                continue
            try:
                with translation.override(language):
                    result = function(*args, **kwargs)
                future.set_result(result)
            except BaseException as error:
                if isinstance(error, DatabaseError):
                    # A dropped connection is replaced on the next call.
                    connection.close_if_unusable_or_obsolete()
                future.set_exception(error)
        connection.close()


def _unwrap(result: Any) -> Any:
    if isinstance(result, BaseException):
        raise result
    return result
