"""The worker's JobContext: what an adapter may do to its running job."""

import threading
import time

from django.conf import settings

from generation import queue
from generation.models import ProviderCall
from generation.queue import Lease
from providers.adapters.base import VendorCall

# Progress is written at most this often, except for the final 100.
PROGRESS_INTERVAL_SECONDS = 0.5
# How often should_stop() looks at the database for a cancel.
CANCEL_CHECK_SECONDS = 1.0


class WorkerStopping(Exception):
    """Raised inside a running job when the worker must stop at once."""


class WorkerJobContext:
    def __init__(self, lease: Lease, stop_now: threading.Event) -> None:
        self.lease = lease
        self.stop_now = stop_now
        self._last_progress = -1
        self._progress_at = 0.0
        # The claim has just set the lease.
        self._renewed_at = time.monotonic()
        self._checked_at = self._renewed_at
        self._lost = False

    def progress(self, percent: int) -> None:
        """Store progress, coalesced. Raises WorkerStopping or queue.LeaseLost."""
        if self.stop_now.is_set():
            raise WorkerStopping()
        # An unchanged or throttled percent writes nothing, so a cancel that
        # should_stop() saw would otherwise go unnoticed here.
        if self._lost:
            raise queue.LeaseLost(str(self.lease.job_id))

        now = time.monotonic()
        due = now - self._progress_at >= PROGRESS_INTERVAL_SECONDS or percent >= 100
        if (percent != self._last_progress and due) or self._renewal_due(now):
            self._write(percent, now)

    def _renewal_due(self, now: float) -> bool:
        # Writing extends the lease, so a job whose progress stays flat for a
        # long time is still not taken over by another worker.
        return now - self._renewed_at >= settings.WORKER_LEASE_SECONDS / 3

    def _write(self, percent: int, now: float) -> None:
        queue.report_progress(self.lease, max(percent, 0))
        self._last_progress, self._progress_at = percent, now
        self._renewed_at = self._checked_at = now

    def save_task_id(self, task_id: str) -> None:
        queue.save_task_id(self.lease, task_id)

    def record_call(self, call: VendorCall) -> None:
        ProviderCall.objects.create(
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
        if self.stop_now.is_set():
            return True

        now = time.monotonic()
        if self._renewal_due(now):
            try:
                self._write(self._last_progress, now)
            except queue.LeaseLost:
                self._lost = True
            return self._lost
        if now - self._checked_at < CANCEL_CHECK_SECONDS:
            return False
        self._checked_at = now
        self._lost = not self.lease.jobs().exists()
        return self._lost
