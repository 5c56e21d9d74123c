"""Wallet balances, holds and settlements under concurrency; the wallet command."""

import threading
from collections import Counter
from io import StringIO

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.db import IntegrityError, connection, transaction

from billing.models import Hold, LedgerEntry, Wallet
from billing.services import (
    InsufficientFunds,
    capture_hold,
    capture_holds,
    release_hold,
    topup,
)
from generation.models import Job
from generation.services import submit_job
from providers.models import ModelSpec

JOB_PRICE = 250
IMAGE_PARAMS = {"size": "512x512"}


def run_concurrently(count: int, action) -> list:
    """Call `action(index)` from `count` threads released together.

    Returns each call's result, or the exception it raised.
    """
    barrier = threading.Barrier(count)
    results: list = [None] * count

    def run(index: int) -> None:
        try:
            barrier.wait(timeout=10)
            results[index] = action(index)
        except Exception as error:
            results[index] = error
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads), "a thread hung"
    return results


def balance_of(user) -> int:
    return Wallet.objects.get(user=user).balance


@pytest.fixture
def priced_model(catalog) -> ModelSpec:
    ModelSpec.objects.filter(name="local-image").update(price=JOB_PRICE)
    return ModelSpec.objects.get(name="local-image")


@pytest.fixture
def held_job(priced_model, owner) -> Job:
    topup(owner, 1000, "test credit")
    job, _ = submit_job(owner, "local-image", "a lighthouse", IMAGE_PARAMS)
    return job


@pytest.mark.django_db(transaction=True)
def test_concurrent_submits_stop_at_balance(priced_model, owner):
    topup(owner, 5 * JOB_PRICE, "test credit")

    def submit(index: int):
        return submit_job(owner, "local-image", f"lighthouse {index}", IMAGE_PARAMS)

    results = run_concurrently(20, submit)

    outcomes = Counter(type(result).__name__ for result in results)
    assert outcomes == {"tuple": 5, "InsufficientFunds": 15}
    assert Job.objects.filter(owner=owner).count() == 5
    assert Hold.objects.filter(job__owner=owner, amount=JOB_PRICE).count() == 5
    assert balance_of(owner) == 0

    hold_entries = LedgerEntry.objects.filter(kind=LedgerEntry.Kind.HOLD)
    balances_after = sorted(hold_entries.values_list("balance_after", flat=True))
    assert balances_after == [0, 250, 500, 750, 1000]


@pytest.mark.django_db(transaction=True)
def test_concurrent_settles_settle_once(held_job, owner):
    def settle(index: int) -> bool:
        settle_hold = capture_hold if index % 2 == 0 else release_hold
        return settle_hold(held_job)

    results = run_concurrently(10, settle)

    assert Counter(results) == {True: 1, False: 9}
    settlements = LedgerEntry.objects.exclude(
        kind__in=[LedgerEntry.Kind.HOLD, LedgerEntry.Kind.TOPUP]
    )
    assert settlements.count() == 1

    hold = Hold.objects.get(job=held_job)
    if hold.status == Hold.Status.CAPTURED:
        assert settlements.get().kind == LedgerEntry.Kind.CAPTURE
        assert balance_of(owner) == 1000 - JOB_PRICE
    else:
        assert hold.status == Hold.Status.RELEASED
        assert settlements.get().kind == LedgerEntry.Kind.RELEASE
        assert balance_of(owner) == 1000


@pytest.mark.django_db(transaction=True)
def test_concurrent_topups_add_up(owner):
    results = run_concurrently(20, lambda index: topup(owner, 125, "test credit"))

    assert all(isinstance(result, LedgerEntry) for result in results), results
    assert balance_of(owner) == 20 * 125
    balances_after = sorted(result.balance_after for result in results)
    assert balances_after == [125 * step for step in range(1, 21)]


@pytest.mark.django_db
def test_capture_holds_settles_each_once(held_job, owner, stranger):
    topup(stranger, 1000, "test credit")
    other, _ = submit_job(stranger, "local-image", "a harbour", IMAGE_PARAMS)
    unheld = Job.objects.create(
        owner=owner, model=held_job.model, provider=held_job.provider, prompt="x"
    )
    release_hold(held_job)

    settled = capture_holds([held_job.pk, other.pk, unheld.pk])

    assert settled == {other.pk}
    assert Hold.objects.get(job=held_job).status == Hold.Status.RELEASED
    assert Hold.objects.get(job=other).status == Hold.Status.CAPTURED
    capture = LedgerEntry.objects.get(hold__job=other, kind=LedgerEntry.Kind.CAPTURE)
    assert capture.amount == 0
    assert capture.balance_after == balance_of(stranger) == 1000 - JOB_PRICE
    assert balance_of(owner) == 1000


@pytest.mark.django_db
def test_release_hold_refunds_balance(held_job, owner):
    assert release_hold(held_job) is True

    release = LedgerEntry.objects.get(hold__job=held_job, kind="release")
    assert release.amount == JOB_PRICE
    assert release.balance_after == balance_of(owner) == 1000


@pytest.mark.django_db
def test_second_settlement_entry_rejected(held_job):
    capture_hold(held_job)
    hold = Hold.objects.get(job=held_job)

    with pytest.raises(IntegrityError), transaction.atomic():
        LedgerEntry.objects.create(
            wallet=hold.wallet,
            kind=LedgerEntry.Kind.RELEASE,
            amount=hold.amount,
            balance_after=hold.wallet.balance + hold.amount,
            hold=hold,
        )


@pytest.mark.django_db
def test_second_opening_entry_rejected(held_job):
    hold = Hold.objects.get(job=held_job)

    with pytest.raises(IntegrityError), transaction.atomic():
        LedgerEntry.objects.create(
            wallet=hold.wallet,
            kind=LedgerEntry.Kind.HOLD,
            amount=-hold.amount,
            balance_after=0,
            hold=hold,
        )


@pytest.mark.django_db
def test_hold_entry_without_hold_rejected(held_job):
    wallet = Hold.objects.get(job=held_job).wallet

    with pytest.raises(IntegrityError), transaction.atomic():
        LedgerEntry.objects.create(
            wallet=wallet, kind=LedgerEntry.Kind.CAPTURE, amount=0, balance_after=0
        )


@pytest.mark.django_db
def test_second_hold_for_job_rejected(held_job):
    wallet = Hold.objects.get(job=held_job).wallet

    with pytest.raises(IntegrityError), transaction.atomic():
        Hold.objects.create(wallet=wallet, job=held_job, amount=JOB_PRICE)


@pytest.mark.django_db
def test_negative_balance_rejected(owner):
    topup(owner, 100, "test credit")

    with pytest.raises(IntegrityError), transaction.atomic():
        Wallet.objects.filter(user=owner).update(balance=-1)

    assert balance_of(owner) == 100


@pytest.mark.django_db
def test_hold_beyond_balance_raises(priced_model, owner):
    topup(owner, JOB_PRICE - 1, "test credit")

    with pytest.raises(InsufficientFunds):
        submit_job(owner, "local-image", "a lighthouse", IMAGE_PARAMS)

    assert balance_of(owner) == JOB_PRICE - 1
    assert not Job.objects.filter(owner=owner).exists()


def wallet_command(*args: str) -> str:
    output = StringIO()
    call_command("wallet", *args, stdout=output)
    return output.getvalue()


@pytest.mark.django_db
def test_wallet_topup_credits_minor_units(owner):
    output = wallet_command("topup", "owner", "12.50", "--reason", "Welcome credit")

    entry = LedgerEntry.objects.get(wallet__user=owner)
    assert balance_of(owner) == 1250
    assert entry.kind == LedgerEntry.Kind.TOPUP
    assert entry.amount == 1250
    assert entry.balance_after == 1250
    assert entry.reason == "Welcome credit"
    assert "12.50" in output


@pytest.mark.django_db
def test_wallet_topup_unknown_user(owner):
    with pytest.raises(CommandError, match="nobody"):
        wallet_command("topup", "nobody", "5", "--reason", "Welcome credit")


@pytest.mark.django_db
@pytest.mark.parametrize(
    "amount", ["-5", "0", "0.00", "1.234", "ten", "NaN", "99999999999999999999"]
)
def test_wallet_topup_invalid_amount(owner, amount):
    with pytest.raises(CommandError):
        wallet_command("topup", "owner", amount, "--reason", "Welcome credit")

    assert balance_of(owner) == 0
    assert not LedgerEntry.objects.exists()


@pytest.mark.django_db
def test_wallet_topup_requires_reason(owner):
    with pytest.raises(CommandError, match="--reason"):
        wallet_command("topup", "owner", "5")

    assert balance_of(owner) == 0


@pytest.mark.django_db
def test_wallet_topup_blank_reason(owner):
    with pytest.raises(CommandError):
        wallet_command("topup", "owner", "5", "--reason", "   ")

    assert balance_of(owner) == 0


@pytest.mark.django_db
def test_wallet_show_prints_balance(owner):
    topup(owner, 1250, "test credit")

    output = wallet_command("show", "owner")

    assert output.strip() == f"owner: balance 12.50 {settings.CURRENCY}"


@pytest.mark.django_db
def test_wallet_show_unknown_user(owner):
    with pytest.raises(CommandError, match="nobody"):
        wallet_command("show", "nobody")
