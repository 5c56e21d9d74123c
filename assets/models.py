import uuid

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

BLOB_DIR = "blobs"


def blob_path(blob: "Blob", filename: str) -> str:
    digest = blob.sha256
    return f"{BLOB_DIR}/{digest[:2]}/{digest[2:4]}/{digest}{blob.extension}"


class Blob(models.Model):
    """A stored file, addressed by its sha256 so identical files are kept once."""

    sha256 = models.CharField(max_length=64, primary_key=True)
    file = models.FileField(upload_to=blob_path, max_length=255)
    size_bytes = models.BigIntegerField()
    mime_type = models.CharField(max_length=100)
    extension = models.CharField(max_length=10)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.sha256


class AssetQuerySet(models.QuerySet):
    def visible_to(self, user) -> "AssetQuerySet":
        """Return the assets `user` may read: their own, or all for staff."""
        if user.is_staff:
            return self
        return self.filter(owner=user)


class Asset(models.Model):
    class Kind(models.TextChoices):
        IMAGE = "image", _("Image")
        VIDEO = "video", _("Video")

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="assets"
    )
    kind = models.CharField(max_length=10, choices=Kind)
    blob = models.ForeignKey(Blob, on_delete=models.PROTECT, related_name="assets")
    thumbnail = models.ForeignKey(
        Blob,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="thumbnail_of",
    )
    mime_type = models.CharField(max_length=100)
    size_bytes = models.BigIntegerField()
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    duration = models.FloatField(null=True, blank=True)
    source_job = models.ForeignKey(
        "generation.Job",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="assets",
    )
    model_name = models.CharField(max_length=100, blank=True)
    prompt = models.TextField(blank=True)
    params = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = AssetQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["owner", "-created_at"], name="asset_owner_idx")
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.id}"

    @property
    def sha256(self) -> str:
        return self.blob_id

    @property
    def file(self):
        return self.blob.file
