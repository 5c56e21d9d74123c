"""State changes of a claimed job. Each write checks the job is still ours.

A worker holds a Lease: the job id, the attempt it claimed and its own id.
Every write filters on all three plus status "running", so a worker whose lease
expired, or whose job was canceled, changes nothing and learns it lost the job.
"""

import logging
import random
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from billing.services import capture_hold, release_hold
from generation.models import Job

logger = logging.getLogger(__name__)


class LeaseLost(Exception):
    """The job was canceled or claimed by another worker; stop working on it."""


@dataclass(frozen=True)
class Lease:
    job_id: object
    attempt: int
    worker_id: str

    def jobs(self):
        return Job.objects.filter(
            pk=self.job_id,
            attempts=self.attempt,
            locked_by=self.worker_id,
            status=Job.Status.RUNNING,
        )


def lease_deadline():
    return timezone.now() + timedelta(seconds=settings.WORKER_LEASE_SECONDS)


def report_progress(lease: Lease, progress: int) -> None:
    """Store progress and extend the lease. Raises LeaseLost."""
    now = timezone.now()
    updated = lease.jobs().update(
        progress=max(0, min(progress, 100)),
        locked_until=lease_deadline(),
        updated_at=now,
    )
    if not updated:
        raise LeaseLost(str(lease.job_id))


def extend_lease(lease: Lease) -> bool:
    """Push the lease deadline forward; return False when the job is no longer ours."""
    now = timezone.now()
    return bool(lease.jobs().update(locked_until=lease_deadline(), updated_at=now))


def save_task_id(lease: Lease, task_id: str) -> None:
    """Store the vendor's task id so a later attempt resumes it. Raises LeaseLost."""
    updated = lease.jobs().update(remote_task_id=task_id, updated_at=timezone.now())
    if not updated:
        raise LeaseLost(str(lease.job_id))


def complete(lease: Lease, store_assets) -> bool:
    """Mark the job completed, store its assets and capture its hold, atomically.

    `store_assets` is called inside the transaction, after the job is known to
    be ours. Returns False (and stores nothing) when the lease was lost.
    """
    with transaction.atomic():
        now = timezone.now()
        updated = lease.jobs().update(
            status=Job.Status.COMPLETED,
            progress=100,
            # An earlier attempt's retried failure no longer describes the job.
            error_code="",
            error_message="",
            finished_at=now,
            locked_until=None,
            updated_at=now,
        )
        if not updated:
            return False
        store_assets()
        capture_hold(Job(pk=lease.job_id))
    return True


def fail(lease: Lease, code: str, message: str) -> bool:
    """End the job as failed and release its hold. Returns False if not ours."""
    with transaction.atomic():
        now = timezone.now()
        updated = lease.jobs().update(
            status=Job.Status.FAILED,
            error_code=code,
            error_message=message,
            finished_at=now,
            locked_until=None,
            updated_at=now,
        )
        if updated:
            release_hold(Job(pk=lease.job_id))
    return bool(updated)


def retry_later(
    lease: Lease, code: str, message: str, retry_after: float | None = None
) -> float:
    """Put the job back in the queue after a backoff; return the delay in seconds.

    Raises LeaseLost when the job is no longer this worker's.
    """
    delay = backoff_seconds(lease.attempt, retry_after)
    now = timezone.now()
    updated = lease.jobs().update(
        status=Job.Status.QUEUED,
        run_after=now + timedelta(seconds=delay),
        error_code=code,
        error_message=message,
        locked_by="",
        locked_until=None,
        updated_at=now,
    )
    if not updated:
        raise LeaseLost(str(lease.job_id))
    return delay


def hand_back(lease: Lease) -> None:
    """Return a job to the queue at once, without counting the attempt."""
    lease.jobs().update(**handed_back_fields())


def handed_back_fields() -> dict:
    """Return the update that puts a running job back in the queue, due now."""
    now = timezone.now()
    return {
        "status": Job.Status.QUEUED,
        "attempts": F("attempts") - 1,
        "run_after": now,
        "locked_by": "",
        "locked_until": None,
        "updated_at": now,
    }


def backoff_seconds(attempt: int, retry_after: float | None = None) -> float:
    """Return an exponential backoff with jitter and a cap, at least Retry-After."""
    growth = settings.RETRY_BASE_SECONDS * 2 ** max(attempt - 1, 0)
    ceiling = min(settings.RETRY_MAX_SECONDS, growth)
    delay = random.uniform(ceiling / 2, ceiling)
    if retry_after is not None:
        delay = max(delay, min(retry_after, settings.RETRY_MAX_SECONDS))
    return delay
