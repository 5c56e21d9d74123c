"""Fair claiming: take due jobs in turns between users, within in-flight caps."""

import logging
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, F
from django.db.models.expressions import Window
from django.db.models.functions import RowNumber
from django.utils import timezone

from generation.models import Job
from generation.queue import lease_deadline

logger = logging.getLogger(__name__)

# Key of the PostgreSQL advisory lock that makes claims take turns: the ASCII
# bytes of "LSCLAIM". No other code in this project takes advisory locks.
CLAIM_LOCK_KEY = 0x4C53_434C_4149_4D


@dataclass(frozen=True)
class Candidate:
    pk: object
    owner_id: object
    provider_id: object
    provider_cap: int | None
    attempts: int
    status: str
    user_running: int
    provider_running: int


def claim_batch(
    worker_id: str, queue: str, limit: int, running_here: Collection = ()
) -> list[Job]:
    """Claim up to `limit` due jobs of `queue`, taking turns between users.

    A user with fewer running jobs goes first, so one user's batch of hundreds
    does not starve another's few. Users and provider accounts at their cap of
    jobs in flight are skipped. So are the ids in `running_here`, the jobs the
    calling worker runs now: when one's lease expired before the worker renewed
    it, claiming it again would run it twice in one process.
    """
    with transaction.atomic():
        if connection.features.has_select_for_update_skip_locked:
            return _take_locked(queue, limit, running_here, worker_id)

        candidates = _candidates(queue, limit, running_here)
        chosen = _within_caps(candidates, limit)
        taken = [c.pk for c in chosen if _take_one(c, worker_id)]
    if not taken:
        return []
    jobs = _with_relations(Job.objects.filter(pk__in=taken))
    return sorted(jobs, key=lambda job: taken.index(job.pk))


def _with_relations(jobs):
    # The runner reads the job's model, provider, owner and owner's language.
    return jobs.select_related("model", "provider", "owner__preference")


def claim_next(worker_id: str, queues: tuple[str, ...] = ("image", "video")):
    """Claim the next due job of any of `queues`, or return None."""
    for queue in queues:
        if jobs := claim_batch(worker_id, queue, 1):
            return jobs[0]
    return None


def _running_counts() -> tuple[Counter, Counter]:
    """Count live running jobs per owner and per provider, in one small query."""
    rows = (
        Job.objects.filter(status=Job.Status.RUNNING, locked_until__gte=timezone.now())
        .order_by()
        .values_list("owner_id", "provider_id")
        .annotate(n=Count("pk"))
    )
    by_owner: Counter = Counter()
    by_provider: Counter = Counter()
    for owner_id, provider_id, count in rows:
        by_owner[owner_id] += count
        by_provider[provider_id] += count
    return by_owner, by_provider


def _candidates(queue: str, limit: int, skipped: Collection) -> list[Candidate]:
    """Return due jobs in claim order: by each user's turn plus their running jobs.

    Only each user's first `limit` due jobs can be among the best `limit`, so the
    query returns no more than those.
    """
    turn = Window(
        RowNumber(),
        partition_by=[F("owner_id")],
        order_by=[F("run_after").asc(), F("created_at").asc()],
    )
    # The rows come in queue order, and the sort by turn below is stable, so
    # jobs of equal turn keep that order without reading their times.
    rows = (
        Job.objects.due()
        .filter(queue=queue)
        .exclude(pk__in=skipped)
        .annotate(turn=turn)
        .filter(turn__lte=limit)
        .order_by("run_after", "created_at")
        .values_list(
            "pk",
            "owner_id",
            "provider_id",
            "provider__max_in_flight",
            "attempts",
            "status",
            "turn",
        )
    )
    by_owner, by_provider = _running_counts()
    candidates = []
    for pk, owner, provider, cap, attempts, status, turn in rows:
        running = by_owner[owner]
        candidate = Candidate(
            pk, owner, provider, cap, attempts, status, running, by_provider[provider]
        )
        candidates.append((turn + running, candidate))
    candidates.sort(key=lambda pair: pair[0])
    return [candidate for _, candidate in candidates]


def _within_caps(candidates: list[Candidate], limit: int) -> list[Candidate]:
    user_cap = settings.USER_MAX_IN_FLIGHT
    added_by_user: dict = {}
    added_by_provider: dict = {}
    chosen = []
    for candidate in candidates:
        user_total = candidate.user_running + added_by_user.get(candidate.owner_id, 0)
        provider_cap = candidate.provider_cap or settings.PROVIDER_MAX_IN_FLIGHT
        provider_total = candidate.provider_running + added_by_provider.get(
            candidate.provider_id, 0
        )
        if (user_cap and user_total >= user_cap) or (
            provider_cap and provider_total >= provider_cap
        ):
            continue
        chosen.append(candidate)
        added_by_user[candidate.owner_id] = added_by_user.get(candidate.owner_id, 0) + 1
        added_by_provider[candidate.provider_id] = (
            added_by_provider.get(candidate.provider_id, 0) + 1
        )
        if len(chosen) == limit:
            break
    return chosen


def _take_locked(
    queue: str, limit: int, running_here: Collection, worker_id: str
) -> list[Job]:
    # The caps count the jobs that committed claims have set running, and a
    # concurrent claim's jobs are not committed yet, so claims take turns. The
    # advisory lock is released when the transaction ends.
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [CLAIM_LOCK_KEY])

    # Rows locked by another transaction, such as an update of a job a worker
    # runs, are skipped: the claim chooses again without them, reading the due
    # jobs after them, instead of claiming nothing while jobs wait. Rows this
    # transaction has locked already are locked again, not skipped.
    busy: set = set()
    while True:
        candidates = _candidates(queue, limit, {*running_here, *busy})
        ids = [c.pk for c in _within_caps(candidates, limit)]
        locked = {
            job.pk: job
            for job in _with_relations(Job.objects.due().filter(pk__in=ids))
            .select_for_update(skip_locked=True, of=("self",))
            .order_by()
        }
        if len(locked) == len(ids):
            break
        busy.update(set(ids) - set(locked))

    if not ids:
        return []
    fields = _claim_fields(worker_id)
    Job.objects.filter(pk__in=ids).update(**fields, attempts=F("attempts") + 1)
    # The rows are locked, so the values read above plus this update are what
    # the database now holds, and the claimed jobs need no second read.
    jobs = [locked[pk] for pk in ids]
    for job in jobs:
        job.attempts += 1
        for name, value in fields.items():
            setattr(job, name, value)
    return jobs


def _take_one(candidate: Candidate, worker_id: str) -> bool:
    # SQLite has no row locks: the compare-and-set on attempts and status
    # makes two workers' claims of one job exclusive.
    claimed = Job.objects.filter(
        pk=candidate.pk, attempts=candidate.attempts, status=candidate.status
    ).update(**_claim_fields(worker_id), attempts=F("attempts") + 1)
    return bool(claimed)


def _claim_fields(worker_id: str) -> dict:
    """Return the claim's update apart from counting the attempt."""
    now = timezone.now()
    return {
        "status": Job.Status.RUNNING,
        "locked_by": worker_id,
        "locked_until": lease_deadline(),
        "started_at": now,
        "updated_at": now,
    }
