"""The control thread's periodic work: leases, cancels, heartbeats, hand-backs.

These run for all of a worker's jobs at once, a query or two per tick, so many
jobs in flight do not multiply the queries.
"""

import logging
import os
import socket
import time
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from generation.models import Job, WorkerProcess
from generation.queue import Lease, handed_back_fields, lease_deadline

logger = logging.getLogger(__name__)


def register(worker) -> None:
    WorkerProcess.objects.create(
        id=worker.worker_id,
        hostname=socket.gethostname(),
        pid=os.getpid(),
        queues=",".join(worker.queues),
        concurrency=worker.concurrency,
    )


def unregister(worker) -> None:
    now = timezone.now()
    WorkerProcess.objects.filter(pk=worker.worker_id).update(
        stopped_at=now, heartbeat_at=now, in_flight=0
    )


def heartbeat(worker_id: str, in_flight: int) -> None:
    WorkerProcess.objects.filter(pk=worker_id).update(
        heartbeat_at=timezone.now(), in_flight=in_flight
    )


def _running_under(leases: list[Lease]):
    """Return the jobs among `leases` still running under their worker."""
    return Job.objects.filter(
        pk__in=[lease.job_id for lease in leases],
        locked_by=leases[0].worker_id,
        status=Job.Status.RUNNING,
    )


def still_ours(leases: list[Lease]) -> set:
    """Return the job ids among `leases` that are still running under them."""
    rows = _running_under(leases).values_list("pk", "attempts")
    attempts = {lease.job_id: lease.attempt for lease in leases}
    return {pk for pk, attempt in rows if attempts.get(pk) == attempt}


def renew(leases: list[Lease]) -> int:
    """Extend the leases of running jobs; returns how many are still ours."""
    return _running_under(leases).update(locked_until=lease_deadline())


def hand_back_all(leases: list[Lease]) -> int:
    """Return still-running jobs to the queue at once, without counting the attempt."""
    return _running_under(leases).update(**handed_back_fields())


class Watch:
    """Runs the periodic checks of one worker's control loop when each is due."""

    def __init__(self, worker) -> None:
        self.worker = worker
        now = time.monotonic()
        self.checked_at = self.renewed_at = self.beat_at = now
        self.stop_requested_at: float | None = None

    def tick(self) -> None:
        now = time.monotonic()
        contexts = self.worker.contexts()
        if contexts and now - self.checked_at >= settings.WORKER_CANCEL_CHECK_SECONDS:
            self.checked_at = now
            self._mark_lost(contexts)
        if contexts and now - self.renewed_at >= settings.WORKER_LEASE_SECONDS / 3:
            self.renewed_at = now
            self.worker.gate.run_first(renew, [context.lease for context in contexts])
        if now - self.beat_at >= settings.WORKER_HEARTBEAT_SECONDS:
            self.beat_at = now
            self.worker.gate.run_first(heartbeat, self.worker.worker_id, len(contexts))

    def grace_over(self, grace_seconds: float) -> bool:
        now = time.monotonic()
        if self.stop_requested_at is None:
            self.stop_requested_at = now
        return now - self.stop_requested_at >= grace_seconds

    def _mark_lost(self, contexts: list) -> None:
        ours = self.worker.gate.run_first(still_ours, [c.lease for c in contexts])
        for context in contexts:
            # A job whose outcome was written while the query ran is no longer
            # running, and was neither canceled nor taken over.
            if context.ending.is_set():
                continue
            if context.lease.job_id not in ours and not context.lost.is_set():
                context.lost.set()
                logger.info(
                    "job canceled or taken over job=%s worker=%s",
                    context.lease.job_id,
                    self.worker.worker_id,
                )


def expired_workers(now=None):
    """Return registered workers that stopped heartbeating without unregistering."""
    now = now or timezone.now()
    limit = now - timedelta(seconds=3 * settings.WORKER_HEARTBEAT_SECONDS)
    return WorkerProcess.objects.filter(stopped_at__isnull=True, heartbeat_at__lt=limit)
