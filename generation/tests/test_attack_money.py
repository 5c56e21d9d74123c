"""Attempts to get generations without paying for them, or to be refunded twice."""

import threading

import pytest
from django.db import connection

from billing.models import Hold, LedgerEntry, Wallet
from billing.services import topup
from conftest import client_for
from generation.models import Job
from providers.models import ModelSpec

PRICE = 300
BALANCE = 1000


@pytest.fixture
def priced(catalog, owner, stranger):
    ModelSpec.objects.filter(name="local-image").update(price=PRICE)
    topup(owner, BALANCE, "test credit")
    topup(stranger, BALANCE, "test credit")


def post_job(client, params=None, **extra):
    body = {"model": "local-image", "prompt": "a lighthouse"}
    body["params"] = {"size": "512x512"} if params is None else params
    return client.post("/api/jobs", body, format="json", **extra)


def balance_of(user) -> int:
    return Wallet.objects.get(user=user).balance


@pytest.mark.django_db
@pytest.mark.parametrize(
    "params",
    [
        {"n": 0},
        {"n": -1},
        {"n": 10**6},
        {"n": "4"},
        {"n": 1.5},
        {"n": True},
        {"n": None, "price": 0},
        {"price": 0},
        {"model": "local-video"},
    ],
)
def test_price_cannot_be_lowered(priced, owner, owner_client, params):
    response = post_job(owner_client, params)

    assert response.status_code in (201, 400)
    if response.status_code == 201:
        assert response.data["price"] == "3.00"
    for job in Job.objects.filter(owner=owner):
        assert job.price == PRICE * job.params["n"]
    assert balance_of(owner) == BALANCE - sum(
        Job.objects.filter(owner=owner).values_list("price", flat=True)
    )


@pytest.mark.django_db
def test_n_multiplies_price(priced, owner, owner_client):
    response = post_job(owner_client, {"size": "512x512", "n": 3})

    assert response.status_code == 201
    assert response.data["price"] == "9.00"
    assert balance_of(owner) == BALANCE - 3 * PRICE


@pytest.mark.django_db
def test_n_over_balance_rejected(priced, owner, owner_client):
    response = post_job(owner_client, {"size": "512x512", "n": 4})

    assert response.status_code == 402
    assert response.data["code"] == "insufficient_funds"
    assert balance_of(owner) == BALANCE
    assert not Job.objects.filter(owner=owner).exists()


@pytest.mark.django_db
def test_idempotency_key_is_per_user(priced, owner, stranger):
    headers = {"HTTP_IDEMPOTENCY_KEY": "shared-key"}
    mine = post_job(client_for(owner), **headers)
    theirs = post_job(client_for(stranger), **headers)

    assert mine.status_code == 201
    assert theirs.status_code == 201
    assert theirs.data["id"] != mine.data["id"]
    assert balance_of(owner) == BALANCE - PRICE
    assert balance_of(stranger) == BALANCE - PRICE


@pytest.mark.django_db
def test_idempotency_key_replay_charges_once(priced, owner, owner_client):
    headers = {"HTTP_IDEMPOTENCY_KEY": "retry-1"}
    first = post_job(owner_client, **headers)
    replay = post_job(owner_client, **headers)
    larger = post_job(owner_client, {"size": "512x512", "n": 3}, **headers)

    assert first.status_code == 201
    assert replay.status_code == 200
    assert replay.data["id"] == first.data["id"]
    assert larger.status_code == 422
    assert balance_of(owner) == BALANCE - PRICE


def run_together(count: int, action) -> list:
    """Run `action()` in `count` threads released at once; return the results."""
    barrier = threading.Barrier(count)
    results: list = [None] * count

    def run(index: int) -> None:
        barrier.wait()
        try:
            results[index] = action()
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return results


@pytest.mark.django_db(transaction=True)
def test_racing_submits_cannot_overdraw(priced, owner):
    statuses = run_together(8, lambda: post_job(client_for(owner)).status_code)

    assert sorted(statuses) == [201] * 3 + [402] * 5
    assert balance_of(owner) == BALANCE - 3 * PRICE
    assert Hold.objects.filter(job__owner=owner).count() == 3


@pytest.mark.django_db(transaction=True)
def test_racing_same_key_one_job(priced, owner):
    headers = {"HTTP_IDEMPOTENCY_KEY": "race-key"}
    responses = run_together(6, lambda: post_job(client_for(owner), **headers))

    statuses = sorted(response.status_code for response in responses)
    ids = {response.data["id"] for response in responses}
    assert statuses == [200] * 5 + [201]
    assert len(ids) == 1
    assert balance_of(owner) == BALANCE - PRICE


@pytest.mark.django_db(transaction=True)
def test_racing_cancels_refund_once(priced, owner):
    job_id = post_job(client_for(owner)).data["id"]

    statuses = run_together(
        6, lambda: client_for(owner).post(f"/api/jobs/{job_id}/cancel").status_code
    )

    assert sorted(statuses) == [200] + [409] * 5
    assert balance_of(owner) == BALANCE
    releases = LedgerEntry.objects.filter(hold__job_id=job_id, kind="release")
    assert releases.count() == 1
