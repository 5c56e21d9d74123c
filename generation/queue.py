"""State changes of a claimed job. Each write checks the job is still ours.

A worker holds a Lease: the job id, the attempt it claimed and its own id.
Every write filters on all three plus status "running", so a worker whose lease
expired, or whose job was canceled, changes nothing and learns it lost the job.
"""

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from billing.services import capture_holds, release_hold
from generation.models import Job
from lightsource.db import update_returning

logger = logging.getLogger(__name__)


class LeaseLost(Exception):
    """The job was canceled or claimed by another worker; stop working on it."""


@dataclass(frozen=True)
class Lease:
    job_id: object
    attempt: int
    worker_id: str

    def jobs(self):
        return leased_jobs([self])


def leased_jobs(leases: list[Lease]):
    """Return the jobs still running under `leases`: same worker and attempt."""
    by_attempt: dict[tuple[int, str], list] = {}
    for lease in leases:
        by_attempt.setdefault((lease.attempt, lease.worker_id), []).append(lease.job_id)
    # Grouping keeps the usual batch, one attempt of one worker, a single
    # `id IN (...)` that PostgreSQL reads through the primary key index.
    matches = Q()
    for (attempt, worker_id), job_ids in by_attempt.items():
        matches |= Q(pk__in=job_ids, attempts=attempt, locked_by=worker_id)
    return Job.objects.filter(matches, status=Job.Status.RUNNING)


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


@dataclass(frozen=True)
class Completion:
    """A finished job's lease and the callable that stores its assets."""

    lease: Lease
    store_assets: Callable[[], None]


def complete(lease: Lease, store_assets: Callable[[], None]) -> bool:
    """Mark the job completed, store its assets and capture its hold, atomically.

    `store_assets` is called inside the transaction, after the job is known to
    be ours. Returns False (and stores nothing) when the lease was lost.
    """
    return _complete_together([Completion(lease, store_assets)])[0]


def complete_many(completions: list[Completion]) -> list[bool | Exception]:
    """Complete several jobs as complete() does, in one transaction if possible.

    Returns, per completion, whether the job was ours or the exception that
    completing it raised. When the shared transaction fails, for instance
    because one job's assets could not be stored, it is rolled back and each
    job is completed in a transaction of its own, so the failure stays with
    its job.
    """
    if len(completions) > 1:
        try:
            return _complete_together(completions)
        except Exception:
            logger.warning(
                "batched completion failed, completing %d jobs one by one",
                len(completions),
                exc_info=True,
            )

    outcomes: list[bool | Exception] = []
    for completion in completions:
        try:
            outcomes.append(_complete_together([completion])[0])
        except Exception as error:
            outcomes.append(error)
    return outcomes


def _complete_together(completions: list[Completion]) -> list[bool]:
    # NOTE: the monitor's renew() updates the same rows from the other gate
    # thread. If the two plans lock the rows in different orders, PostgreSQL
    # aborts one as a deadlock: a batch then completes job by job, and a failed
    # renew is retried at the next tick. This has not been seen in tests.
    leases = [completion.lease for completion in completions]
    with transaction.atomic():
        now = timezone.now()
        rows = update_returning(
            leased_jobs(leases),
            ["pk"],
            status=Job.Status.COMPLETED,
            progress=100,
            # An earlier attempt's retried failure no longer describes the job.
            error_code="",
            error_message="",
            finished_at=now,
            locked_until=None,
            updated_at=now,
        )
        ours = {pk for (pk,) in rows}
        for completion in completions:
            if completion.lease.job_id in ours:
                completion.store_assets()
        if ours:
            capture_holds(ours)
    return [lease.job_id in ours for lease in leases]


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
