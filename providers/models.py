import os
import uuid
from decimal import Decimal

from django.core.validators import MinValueValidator
from django.db import models
from django.utils.translation import gettext_lazy as _

from billing.money import format_amount


class Provider(models.Model):
    """A configured account at a vendor, spoken to by the adapter of its kind."""

    class Kind(models.TextChoices):
        LOCAL = "local", "Offline preview renderer"
        MODELSCOPE = "modelscope", "ModelScope"
        SORA2_CHAT = "sora2_chat", "Sora 2 chat gateway"
        OPENAI_IMAGES = "openai_images", "OpenAI Images"
        OPENAI_VIDEOS = "openai_videos", "OpenAI Videos"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.SlugField(max_length=64, unique=True)
    kind = models.CharField(max_length=32, choices=Kind)
    base_url = models.URLField(blank=True)
    api_key_env = models.CharField(
        max_length=128, blank=True, help_text="Environment variable with the key."
    )
    api_key = models.CharField(max_length=512, blank=True)
    enabled = models.BooleanField(default=False)
    max_in_flight = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Jobs of this account running at once across all workers; "
        "blank uses PROVIDER_MAX_IN_FLIGHT.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def resolve_api_key(self) -> str:
        """Return the key from the variable named by api_key_env, else the saved one."""
        if self.api_key_env and os.environ.get(self.api_key_env):
            return os.environ[self.api_key_env]
        return self.api_key


class ModelSpecQuerySet(models.QuerySet):
    def available(self) -> "ModelSpecQuerySet":
        return self.filter(enabled=True, provider__enabled=True)


class ModelSpec(models.Model):
    """A catalog entry: a model users pick, with its price and parameter limits."""

    class Kind(models.TextChoices):
        IMAGE = "image", _("Image")
        VIDEO = "video", _("Video")

    class PriceUnit(models.TextChoices):
        JOB = "job", "per output"
        SECOND = "second", "per second of video"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.SlugField(max_length=100, unique=True)
    label = models.CharField(max_length=200, blank=True)
    description = models.TextField(blank=True)
    kind = models.CharField(max_length=10, choices=Kind)
    provider = models.ForeignKey(
        Provider, on_delete=models.PROTECT, related_name="models"
    )
    remote_name = models.CharField(max_length=200)
    # In the minor unit of settings.CURRENCY.
    price = models.BigIntegerField(default=0, validators=[MinValueValidator(0)])
    price_unit = models.CharField(max_length=10, choices=PriceUnit, default="job")
    sizes = models.JSONField(default=list, blank=True)
    max_prompt_chars = models.PositiveIntegerField(default=2000)
    durations = models.JSONField(default=list, blank=True)
    max_n = models.PositiveSmallIntegerField(default=1)
    deadline_seconds = models.PositiveIntegerField(default=600)
    supports = models.JSONField(
        default=list, blank=True, help_text="Optional params: negative_prompt, ..."
    )
    enabled = models.BooleanField(default=True)
    sort_order = models.IntegerField(default=0)

    objects = ModelSpecQuerySet.as_manager()

    class Meta:
        ordering = ["sort_order", "name"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(price__gte=0), name="modelspec_price_not_negative"
            )
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def display_name(self) -> str:
        return self.label or self.name

    @property
    def price_display(self) -> Decimal:
        return format_amount(self.price)

    def price_for(self, params: dict) -> int:
        """Return the price of a job with these validated params: per output, or
        per second of each output for a per-second video model."""
        price = self.price * params.get("n", 1)
        if self.price_unit == self.PriceUnit.SECOND:
            price *= params["duration"]
        return price

    @property
    def default_size(self) -> str:
        return self.sizes[0] if self.sizes else "1024x1024"

    def limits(self) -> dict:
        return {
            "sizes": self.sizes,
            "max_prompt_chars": self.max_prompt_chars,
            "durations": self.durations,
            "max_n": self.max_n,
            "deadline_seconds": self.deadline_seconds,
        }
