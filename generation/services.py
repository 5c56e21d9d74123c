"""Submit and cancel jobs. The worker's state changes live in generation.queue."""

import logging
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext

from billing.services import place_hold, release_hold
from generation.models import Job
from generation.validation import clean_submission
from generation.wakeup import notify_job_queued

logger = logging.getLogger(__name__)


def submit_job(
    user,
    model_name: Any,
    prompt: Any,
    params: Any = None,
    idempotency_key: str | None = None,
) -> tuple[Job, bool]:
    """Validate, price, hold the price and queue a job, all in one transaction.

    Returns (job, created). A repeated idempotency key returns the first job.
    Raises InvalidSubmission, IdempotencyConflict (the key was used for another
    request) or billing.services.InsufficientFunds.
    """
    if idempotency_key:
        existing = Job.objects.filter(owner=user, idempotency_key=idempotency_key)
        if job := existing.select_related("model").first():
            return _check_repeat(job, model_name, prompt, params), False

    model, cleaned_prompt, cleaned_params = clean_submission(
        user, model_name, prompt, {} if params is None else params
    )
    try:
        job = _create_job(user, model, cleaned_prompt, cleaned_params, idempotency_key)
    except IntegrityError:
        # A concurrent request with the same key won the race.
        if not idempotency_key:
            raise
        job = Job.objects.select_related("model").get(
            owner=user, idempotency_key=idempotency_key
        )
        return _check_repeat(job, model_name, prompt, params), False

    logger.info("job queued job=%s model=%s user=%s", job.pk, model.name, user.pk)
    return job, True


class IdempotencyConflict(Exception):
    """An idempotency key was sent again with a different request."""

    def __init__(self, job: Job) -> None:
        super().__init__(str(job.pk))
        self.job = job


def _check_repeat(job: Job, model_name: Any, prompt: Any, params: Any) -> Job:
    """Return `job` if this request repeats the one that created it, else raise.

    The stored params are cleaned, with defaults and a generated seed added,
    so only the params this request names are compared.
    """
    same_prompt = isinstance(prompt, str) and prompt.strip() == job.prompt
    requested = params if isinstance(params, dict) else {}
    same_params = all(
        job.params.get(name) == value for name, value in requested.items()
    )
    if job.model.name == model_name and same_prompt and same_params:
        return job
    raise IdempotencyConflict(job)


@transaction.atomic
def _create_job(user, model, prompt: str, params: dict, key: str | None) -> Job:
    job = Job.objects.create(
        owner=user,
        model=model,
        provider=model.provider,
        remote_model=model.remote_name,
        queue=model.kind,
        price=model.price_for(params),
        prompt=prompt,
        params=params,
        idempotency_key=key or None,
        max_attempts=settings.JOB_MAX_ATTEMPTS,
    )
    place_hold(job, job.price)
    transaction.on_commit(lambda: notify_job_queued(job.queue))
    return job


class CannotCancel(Exception):
    pass


def cancel_job(job: Job) -> Job:
    """Cancel a queued or running job and release its hold.

    A running job's worker notices at its next checked write and stops.
    Raises CannotCancel for a job that has already finished.
    """
    with transaction.atomic():
        canceled = Job.objects.filter(
            pk=job.pk, status__in=[Job.Status.QUEUED, Job.Status.RUNNING]
        ).update(
            status=Job.Status.CANCELED,
            finished_at=timezone.now(),
            locked_until=None,
            error_code="",
            error_message="",
        )
        if not canceled:
            raise CannotCancel(
                gettext("The job is already %(status)s.")
                % {"status": job.get_status_display().lower()}
            )
        release_hold(job)

    logger.info("job canceled job=%s", job.pk)
    job.refresh_from_db()
    return job
