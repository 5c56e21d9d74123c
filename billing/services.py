"""Wallet operations. Every change of a balance writes a ledger entry."""

import logging
from collections.abc import Collection

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from billing.models import Hold, LedgerEntry, Wallet
from lightsource.db import update_returning

logger = logging.getLogger(__name__)


class InsufficientFunds(Exception):
    def __init__(self, needed: int, available: int) -> None:
        super().__init__(f"needed {needed}, available {available}")
        self.needed = needed
        self.available = available


def wallet_for(user) -> Wallet:
    wallet, _ = Wallet.objects.get_or_create(user=user)
    return wallet


def _add_to_balance(wallet_id, amount: int) -> int:
    """Add `amount` (may be negative) and return the new balance, row locked."""
    rows = update_returning(
        Wallet.objects.filter(pk=wallet_id),
        ["balance"],
        balance=F("balance") + amount,
        updated_at=timezone.now(),
    )
    return rows[0][0]


@transaction.atomic
def topup(user, amount: int, reason: str, created_by=None) -> LedgerEntry:
    """Credit `amount` minor units to the user's wallet."""
    if amount <= 0:
        raise ValueError("A top-up amount must be positive.")

    wallet = wallet_for(user)
    balance = _add_to_balance(wallet.pk, amount)
    logger.info("wallet topup wallet=%s amount=%s", wallet.pk, amount)
    return LedgerEntry.objects.create(
        wallet=wallet,
        kind=LedgerEntry.Kind.TOPUP,
        amount=amount,
        balance_after=balance,
        reason=reason,
        created_by=created_by,
    )


def place_hold(job, amount: int) -> Hold:
    """Move `amount` from the owner's balance into a hold for `job`.

    Must run inside the transaction that creates the job. Raises
    InsufficientFunds when the balance is too low; nothing changes then.
    """
    wallet = wallet_for(job.owner)
    debited = Wallet.objects.filter(pk=wallet.pk, balance__gte=amount).update(
        balance=F("balance") - amount, updated_at=timezone.now()
    )
    if not debited:
        wallet.refresh_from_db(fields=["balance"])
        raise InsufficientFunds(needed=amount, available=wallet.balance)

    balance = Wallet.objects.values_list("balance", flat=True).get(pk=wallet.pk)
    hold = Hold.objects.create(wallet=wallet, job=job, amount=amount)
    LedgerEntry.objects.create(
        wallet=wallet,
        kind=LedgerEntry.Kind.HOLD,
        amount=-amount,
        balance_after=balance,
        hold=hold,
    )
    return hold


_SETTLEMENT_KINDS = {
    Hold.Status.CAPTURED: LedgerEntry.Kind.CAPTURE,
    Hold.Status.RELEASED: LedgerEntry.Kind.RELEASE,
}


# Settling joins the caller's transaction without a savepoint: a failure rolls
# back the whole unit (job state and money together), and it saves round trips.
@transaction.atomic(savepoint=False)
def capture_hold(job) -> bool:
    """Keep the held money as the job's payment. Returns False if already settled."""
    return bool(_settle([job.pk], Hold.Status.CAPTURED))


@transaction.atomic(savepoint=False)
def capture_holds(job_ids: Collection) -> set:
    """Capture the holds of `job_ids` in three queries; return the ids settled now."""
    return _settle(job_ids, Hold.Status.CAPTURED)


@transaction.atomic(savepoint=False)
def release_hold(job) -> bool:
    """Return the held money to the balance. Returns False if already settled."""
    return bool(_settle([job.pk], Hold.Status.RELEASED))


def _settle(job_ids: Collection, status: str) -> set:
    # The conditional update lets only one caller move a hold out of "held";
    # the ledger's unique constraint backs that up in the database itself.
    settled = update_returning(
        Hold.objects.filter(job_id__in=job_ids, status=Hold.Status.HELD),
        ["id", "wallet_id", "job_id", "amount"],
        status=status,
        settled_at=timezone.now(),
    )
    if not settled:
        return set()

    entries = []
    balances = _balances({wallet_id for _, wallet_id, _, _ in settled})
    for hold_id, wallet_id, _, amount in settled:
        # A capture moves no money: the hold already took it from the balance.
        refund = amount if status == Hold.Status.RELEASED else 0
        if refund:
            balances[wallet_id] = _add_to_balance(wallet_id, refund)
        entries.append(
            LedgerEntry(
                wallet_id=wallet_id,
                kind=_SETTLEMENT_KINDS[status],
                amount=refund,
                balance_after=balances[wallet_id],
                hold_id=hold_id,
            )
        )
    LedgerEntry.objects.bulk_create(entries)
    for hold_id, _, job_id, _ in settled:
        logger.info("hold settled job=%s hold=%s status=%s", job_id, hold_id, status)
    return {job_id for _, _, job_id, _ in settled}


def _balances(wallet_ids: set) -> dict:
    return dict(Wallet.objects.filter(pk__in=wallet_ids).values_list("pk", "balance"))
