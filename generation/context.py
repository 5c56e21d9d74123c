"""The worker's JobContext: what an adapter may do to its running job."""

import threading
import time

from django.conf import settings

from generation import queue
from generation.dbgate import DatabaseGate
from generation.models import ProviderCall
from generation.queue import Lease
from providers.adapters.base import VendorCall

# Progress is written at most this often, except for the final 100.
PROGRESS_INTERVAL_SECONDS = 1.0


class WorkerStopping(Exception):
    """Raised inside a running job when the worker must stop at once."""


class WorkerJobContext:
    """Connects one running job to the database through the worker's gate.

    With `monitored` set, the worker's control loop renews the leases and checks
    for cancels of all its jobs in one query, and sets `lost`. Otherwise, when a
    worker runs one job in its own thread, this context does both itself.
    """

    def __init__(
        self,
        lease: Lease,
        gate: DatabaseGate,
        stop_now: threading.Event,
        monitored: bool = False,
    ) -> None:
        self.lease = lease
        self.gate = gate
        self.stop_now = stop_now
        self.monitored = monitored
        self.lost = threading.Event()
        # Set just before the runner writes the job's outcome. That write
        # checks the lease itself, so a cancel check has nothing to stop then.
        self.ending = threading.Event()
        self._last_progress = -1
        self._pending: int | None = None
        self._progress_at = 0.0
        # The claim has just set the lease.
        self._renewed_at = self._checked_at = time.monotonic()

    def progress(self, percent: int) -> None:
        """Store progress, coalesced. Raises WorkerStopping or queue.LeaseLost."""
        if self.stop_now.is_set():
            raise WorkerStopping()
        # An unchanged or throttled percent writes nothing, so a cancel that
        # should_stop() saw would otherwise go unnoticed here.
        if self.lost.is_set():
            raise queue.LeaseLost(str(self.lease.job_id))

        now = time.monotonic()
        due = now - self._progress_at >= PROGRESS_INTERVAL_SECONDS or percent >= 100
        if (percent != self._last_progress and due) or self._renewal_due(now):
            self._write(percent, now)
        elif percent != self._last_progress:
            # Written later by should_stop(), so the last value is not lost.
            self._pending = percent

    def save_task_id(self, task_id: str) -> None:
        self.gate.run(queue.save_task_id, self.lease, task_id)

    def record_call(self, call: VendorCall) -> None:
        self.gate.run(
            ProviderCall.objects.create,
            job_id=self.lease.job_id,
            attempt=self.lease.attempt,
            method=call.method,
            url=call.url,
            status=call.status,
            duration_ms=call.duration_ms,
            request_excerpt=call.request_excerpt,
            response_excerpt=call.response_excerpt,
            error=call.error,
        )

    def should_stop(self) -> bool:
        if self.stop_now.is_set() or self.lost.is_set():
            return True

        now = time.monotonic()
        if (
            self._pending is not None
            and now - self._progress_at >= PROGRESS_INTERVAL_SECONDS
        ):
            self._renew(now, self._pending)
        if self.monitored:
            return self.lost.is_set()

        if self._renewal_due(now):
            self._renew(now, self._last_progress)
        elif now - self._checked_at >= settings.WORKER_CANCEL_CHECK_SECONDS:
            self._checked_at = now
            if not self.gate.run(self.lease.jobs().exists):
                self.lost.set()
        return self.lost.is_set()

    def _renewal_due(self, now: float) -> bool:
        # Writing extends the lease, so a job whose progress stays flat for a
        # long time is still not taken over by another worker.
        if self.monitored:
            return False
        return now - self._renewed_at >= settings.WORKER_LEASE_SECONDS / 3

    def _renew(self, now: float, percent: int) -> None:
        try:
            self._write(percent, now)
        except queue.LeaseLost:
            self.lost.set()

    def _write(self, percent: int, now: float) -> None:
        self.gate.run(queue.report_progress, self.lease, max(percent, 0))
        self._last_progress, self._progress_at = percent, now
        self._pending = None
        self._renewed_at = self._checked_at = now
