import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q

from billing.money import format_amount


class WalletQuerySet(models.QuerySet):
    def visible_to(self, user) -> "WalletQuerySet":
        if user.is_staff:
            return self
        return self.filter(user=user)


class Wallet(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="wallet"
    )
    # Spendable amount in minor units; money held for running jobs is not in it.
    balance = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = WalletQuerySet.as_manager()

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(balance__gte=0), name="wallet_balance_not_negative"
            )
        ]

    def __str__(self) -> str:
        return f"wallet of {self.user}"

    @property
    def balance_display(self):
        return format_amount(self.balance)


class Hold(models.Model):
    """Money set aside for one job at submit, captured or released once."""

    class Status(models.TextChoices):
        HELD = "held", "Held"
        CAPTURED = "captured", "Captured"
        RELEASED = "released", "Released"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    wallet = models.ForeignKey(Wallet, on_delete=models.PROTECT, related_name="holds")
    job = models.OneToOneField(
        "generation.Job", on_delete=models.PROTECT, related_name="hold"
    )
    amount = models.BigIntegerField()
    status = models.CharField(max_length=10, choices=Status, default=Status.HELD)
    created_at = models.DateTimeField(auto_now_add=True)
    settled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(amount__gte=0), name="hold_amount_not_negative"
            )
        ]

    def __str__(self) -> str:
        return f"hold {self.amount} for job {self.job_id} ({self.status})"


class LedgerEntry(models.Model):
    """One movement of money. A hold has one entry to open it and one to settle it."""

    class Kind(models.TextChoices):
        TOPUP = "topup", "Top-up"
        HOLD = "hold", "Hold"
        CAPTURE = "capture", "Capture"
        RELEASE = "release", "Release"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    wallet = models.ForeignKey(Wallet, on_delete=models.PROTECT, related_name="entries")
    kind = models.CharField(max_length=10, choices=Kind)
    # Signed change of the wallet balance, in minor units.
    amount = models.BigIntegerField()
    balance_after = models.BigIntegerField()
    hold = models.ForeignKey(
        Hold, null=True, blank=True, on_delete=models.PROTECT, related_name="entries"
    )
    reason = models.CharField(max_length=255, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "ledger entries"
        constraints = [
            models.UniqueConstraint(
                fields=["hold"],
                condition=Q(kind="hold"),
                name="ledger_one_opening_per_hold",
            ),
            models.UniqueConstraint(
                fields=["hold"],
                condition=Q(kind__in=["capture", "release"]),
                name="ledger_one_settlement_per_hold",
            ),
            models.CheckConstraint(
                condition=Q(hold__isnull=False) | Q(kind="topup"),
                name="ledger_hold_entries_name_their_hold",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.amount} on {self.wallet_id}"
