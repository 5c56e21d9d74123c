import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone


class JobQuerySet(models.QuerySet):
    def visible_to(self, user) -> "JobQuerySet":
        """Return the jobs `user` may read: their own, or all for staff."""
        if user.is_staff:
            return self
        return self.filter(owner=user)

    def due(self, now=None) -> "JobQuerySet":
        """Return jobs a worker may claim: queued and due, or running with a dead lease."""
        now = now or timezone.now()
        queued = Q(status=Job.Status.QUEUED, run_after__lte=now)
        orphaned = Q(status=Job.Status.RUNNING, locked_until__lt=now)
        return self.filter(queued | orphaned)


class Job(models.Model):
    """A generation request and, at the same time, the row the queue works on."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        COMPLETED = "completed", "Completed"
        FAILED = "failed", "Failed"
        CANCELED = "canceled", "Canceled"

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
        ahead = Job.objects.filter(status=self.Status.QUEUED).filter(
            Q(run_after__lt=self.run_after)
            | Q(run_after=self.run_after, created_at__lt=self.created_at)
        )
        return ahead.count() + 1
