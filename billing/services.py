"""Wallet operations. Every change of a balance writes a ledger entry."""

import logging

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from billing.models import Hold, LedgerEntry, Wallet

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
    Wallet.objects.filter(pk=wallet_id).update(
        balance=F("balance") + amount, updated_at=timezone.now()
    )
    return Wallet.objects.values_list("balance", flat=True).get(pk=wallet_id)


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
    return _settle(job, Hold.Status.CAPTURED)


@transaction.atomic(savepoint=False)
def release_hold(job) -> bool:
    """Return the held money to the balance. Returns False if already settled."""
    return _settle(job, Hold.Status.RELEASED)


def _settle(job, status: str) -> bool:
    # The conditional update lets only one caller move the hold out of "held";
    # the ledger's unique constraint backs that up in the database itself.
    settled = Hold.objects.filter(job=job, status=Hold.Status.HELD).update(
        status=status, settled_at=timezone.now()
    )
    if not settled:
        return False

    hold = Hold.objects.get(job=job)
    refund = hold.amount if status == Hold.Status.RELEASED else 0
    if refund:
        balance = _add_to_balance(hold.wallet_id, refund)
    else:
        # A capture moves no money: the hold already took it from the balance.
        balance = Wallet.objects.values_list("balance", flat=True).get(
            pk=hold.wallet_id
        )
    LedgerEntry.objects.create(
        wallet_id=hold.wallet_id,
        kind=_SETTLEMENT_KINDS[status],
        amount=refund,
        balance_after=balance,
        hold=hold,
    )
    logger.info("hold settled job=%s hold=%s status=%s", job.pk, hold.pk, status)
    return True
