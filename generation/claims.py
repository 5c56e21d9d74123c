"""Fair claiming: take due jobs in turns between users, within in-flight caps."""

import logging
from dataclasses import dataclass

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, F, IntegerField, OuterRef, Subquery, Value
from django.db.models.expressions import Window
from django.db.models.functions import Coalesce, RowNumber
from django.utils import timezone

from generation.models import Job
from generation.queue import lease_deadline

logger = logging.getLogger(__name__)


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


def claim_batch(worker_id: str, queue: str, limit: int) -> list[Job]:
    """Claim up to `limit` due jobs of `queue`, taking turns between users.

    A user with fewer running jobs goes first, so one user's batch of hundreds
    does not starve another's few. Users and provider accounts at their cap of
    jobs in flight are skipped.
    """
    with transaction.atomic():
        candidates = _candidates(queue, scan=limit * 4 + 16)
        chosen = _within_caps(candidates, limit)
        if connection.features.has_select_for_update_skip_locked:
            taken = _take_locked(chosen, worker_id)
        else:
            taken = [c.pk for c in chosen if _take_one(c, worker_id)]
    if not taken:
        return []
    jobs = Job.objects.select_related("model", "provider", "owner").filter(pk__in=taken)
    return sorted(jobs, key=lambda job: taken.index(job.pk))


def claim_next(worker_id: str, queues: tuple[str, ...] = ("image", "video")):
    """Claim the next due job of any of `queues`, or return None."""
    for queue in queues:
        if jobs := claim_batch(worker_id, queue, 1):
            return jobs[0]
    return None


def _running_count(field: str) -> Subquery:
    running = Job.objects.filter(
        status=Job.Status.RUNNING,
        locked_until__gte=timezone.now(),
        **{field: OuterRef(field)},
    )
    counted = running.order_by().values(field).annotate(n=Count("pk")).values("n")
    return Coalesce(Subquery(counted[:1]), Value(0), output_field=IntegerField())


def _candidates(queue: str, scan: int) -> list[Candidate]:
    turn = Window(
        RowNumber(),
        partition_by=[F("owner_id")],
        order_by=[F("run_after").asc(), F("created_at").asc()],
    )
    rows = (
        Job.objects.due()
        .filter(queue=queue)
        .annotate(
            user_running=_running_count("owner_id"),
            provider_running=_running_count("provider_id"),
            turn=turn,
        )
        .annotate(rank=F("user_running") + F("turn"))
        .order_by("rank", "run_after", "created_at")
        .values_list(
            "pk",
            "owner_id",
            "provider_id",
            "provider__max_in_flight",
            "attempts",
            "status",
            "user_running",
            "provider_running",
        )[:scan]
    )
    return [Candidate(*row) for row in rows]


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


def _take_locked(chosen: list[Candidate], worker_id: str) -> list:
    ids = [c.pk for c in chosen]
    locked = set(
        Job.objects.due()
        .filter(pk__in=ids)
        .select_for_update(skip_locked=True, of=("self",))
        .values_list("pk", flat=True)
    )
    taken = [pk for pk in ids if pk in locked]
    if taken:
        Job.objects.filter(pk__in=taken).update(**_claim_fields(worker_id))
    return taken


def _take_one(candidate: Candidate, worker_id: str) -> bool:
    # SQLite has no row locks: the compare-and-set on attempts and status
    # makes two workers' claims of one job exclusive.
    claimed = Job.objects.filter(
        pk=candidate.pk, attempts=candidate.attempts, status=candidate.status
    ).update(**_claim_fields(worker_id))
    return bool(claimed)


def _claim_fields(worker_id: str) -> dict:
    now = timezone.now()
    return {
        "status": Job.Status.RUNNING,
        "attempts": F("attempts") + 1,
        "locked_by": worker_id,
        "locked_until": lease_deadline(),
        "started_at": now,
        "updated_at": now,
    }
