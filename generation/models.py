import uuid
from collections.abc import Iterable

from django.conf import settings
from django.db import connection, models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

# Queue positions in fair claim order (generation.claims): each user's first queued
# job comes before anyone's second. Running jobs and caps are left out: an estimate.
_POSITIONS_SQL = """
WITH ranked AS (
    SELECT id, queue, run_after, created_at,
           ROW_NUMBER() OVER (
               PARTITION BY owner_id, queue
               ORDER BY run_after, created_at, id
           ) AS turn
    FROM {table}
    WHERE status = %s
)
SELECT job.id, 1 + (
    SELECT COUNT(*) FROM ranked AS other
    WHERE other.queue = job.queue
      AND (
          other.turn < job.turn
          OR (other.turn = job.turn AND other.run_after < job.run_after)
          OR (
              other.turn = job.turn
              AND other.run_after = job.run_after
              AND other.created_at < job.created_at
          )
      )
)
FROM ranked AS job
WHERE job.id IN ({placeholders})
"""


class JobQuerySet(models.QuerySet):
    def visible_to(self, user) -> "JobQuerySet":
        """Return the jobs `user` may read: their own, or all for staff."""
        if user.is_staff:
            return self
        return self.filter(owner=user)

    def due(self, now=None) -> "JobQuerySet":
        """Return claimable jobs: queued and due, or running with an expired lease."""
        now = now or timezone.now()
        queued = Q(status=Job.Status.QUEUED, run_after__lte=now)
        orphaned = Q(status=Job.Status.RUNNING, locked_until__lt=now)
        return self.filter(queued | orphaned)


class Job(models.Model):
    """A generation request and, at the same time, the row the queue works on."""

    class Status(models.TextChoices):
        QUEUED = "queued", _("Queued")
        RUNNING = "running", _("Running")
        COMPLETED = "completed", _("Completed")
        FAILED = "failed", _("Failed")
        CANCELED = "canceled", _("Canceled")

    TERMINAL = (Status.COMPLETED, Status.FAILED, Status.CANCELED)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="jobs"
    )
    model = models.ForeignKey(
        "providers.ModelSpec", on_delete=models.PROTECT, related_name="jobs"
    )
    # What the job was submitted with, kept even if the catalog changes later.
    provider = models.ForeignKey(
        "providers.Provider", on_delete=models.PROTECT, related_name="jobs"
    )
    remote_model = models.CharField(max_length=200)
    # The worker pool that runs it: the model's kind, "image" or "video".
    queue = models.CharField(max_length=20, default="image")
    price = models.BigIntegerField(default=0)
    prompt = models.TextField()
    params = models.JSONField(default=dict, blank=True)
    idempotency_key = models.CharField(max_length=255, null=True, blank=True)

    status = models.CharField(
        max_length=10, choices=Status, default=Status.QUEUED, db_index=True
    )
    progress = models.PositiveSmallIntegerField(default=0)
    error_code = models.CharField(max_length=64, blank=True)
    error_message = models.TextField(blank=True)

    attempts = models.PositiveIntegerField(default=0)
    max_attempts = models.PositiveIntegerField(default=3)
    run_after = models.DateTimeField(default=timezone.now)
    locked_by = models.CharField(max_length=100, blank=True)
    locked_until = models.DateTimeField(null=True, blank=True)
    remote_task_id = models.CharField(max_length=255, blank=True)

    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = JobQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["status", "run_after"], name="job_due_idx"),
            models.Index(fields=["locked_by", "status"], name="job_worker_idx"),
            # Claims count the running jobs per user and provider.
            models.Index(
                fields=["owner", "provider"],
                condition=Q(status="running"),
                name="job_running_idx",
            ),
            models.Index(fields=["owner", "-created_at"], name="job_owner_idx"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["owner", "idempotency_key"],
                condition=Q(idempotency_key__isnull=False),
                name="job_unique_idempotency_key",
            ),
            models.CheckConstraint(
                condition=Q(progress__lte=100), name="job_progress_at_most_100"
            ),
        ]

    def __str__(self) -> str:
        return f"job {self.id} ({self.status})"

    @property
    def is_terminal(self) -> bool:
        return self.status in self.TERMINAL

    @property
    def error(self) -> dict | None:
        if not self.error_code:
            return None
        return {"code": self.error_code, "message": self.error_message}

    def queue_position(self) -> int | None:
        """Return 1 for the next queued job to run, or None when not queued."""
        if self.status != self.Status.QUEUED:
            return None
        if not hasattr(self, "position_in_queue"):
            attach_queue_positions([self])
        return self.position_in_queue


class ProviderCall(models.Model):
    """A redacted summary of one vendor HTTP call made for a job, for staff."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="calls")
    attempt = models.PositiveIntegerField()
    method = models.CharField(max_length=10)
    url = models.TextField()
    status = models.PositiveSmallIntegerField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField()
    request_excerpt = models.TextField(blank=True)
    response_excerpt = models.TextField(blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at"]

    def __str__(self) -> str:
        return f"{self.method} {self.url} -> {self.status}"


class WorkerProcess(models.Model):
    """One start of `runworker`, with its heartbeat, so staff can see who is alive."""

    id = models.CharField(max_length=100, primary_key=True)
    hostname = models.CharField(max_length=255)
    pid = models.PositiveIntegerField()
    queues = models.CharField(max_length=100)
    concurrency = models.PositiveIntegerField()
    in_flight = models.PositiveIntegerField(default=0)
    started_at = models.DateTimeField(default=timezone.now)
    heartbeat_at = models.DateTimeField(default=timezone.now)
    stopped_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at"]
        verbose_name_plural = "worker processes"

    def __str__(self) -> str:
        return self.id

    def is_alive(self, now=None) -> bool:
        if self.stopped_at is not None:
            return False
        now = now or timezone.now()
        limit = 3 * settings.WORKER_HEARTBEAT_SECONDS
        return (now - self.heartbeat_at).total_seconds() < limit


def queue_positions(job_ids: Iterable) -> dict:
    """Return {job id: position} for the queued jobs among `job_ids`; 1 runs next."""
    pk_field = Job._meta.pk
    params = [pk_field.get_db_prep_value(pk, connection) for pk in job_ids]
    if not params:
        return {}
    sql = _POSITIONS_SQL.format(
        table=connection.ops.quote_name(Job._meta.db_table),
        placeholders=", ".join(["%s"] * len(params)),
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [Job.Status.QUEUED, *params])
        rows = cursor.fetchall()
    return {pk_field.to_python(pk): position for pk, position in rows}


def attach_queue_positions(jobs: list[Job]) -> None:
    """Set `position_in_queue` on each of `jobs` with one query for all of them."""
    queued = [job.pk for job in jobs if job.status == Job.Status.QUEUED]
    positions = queue_positions(queued)
    for job in jobs:
        job.position_in_queue = positions.get(job.pk)
