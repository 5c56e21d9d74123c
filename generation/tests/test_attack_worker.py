"""Attacks on the worker's lease: stale workers, slow downloads, double settling."""

import base64
import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from billing.models import Hold, LedgerEntry, Wallet
from billing.services import topup
from conftest import client_for
from generation import queue
from generation.claims import claim_next
from generation.models import Job
from generation.queue import Lease
from generation.services import submit_job
from generation.worker import Worker
from providers.adapters import openai_images
from providers.models import ModelSpec
from providers.tests.fakes.media import png_bytes
from providers.tests.fakes.scripted import ScriptedVendor
from providers.tests.fakes.server import Reply
from providers.tests.openai_jobs import add_image_model, add_provider, fund, submit

pytestmark = pytest.mark.django_db

PRICE = 250


@pytest.fixture
def paid_job(catalog, owner) -> Job:
    ModelSpec.objects.filter(name="local-image").update(price=PRICE)
    topup(owner, 1000, "test credit")
    job, _ = submit_job(owner, "local-image", "a lighthouse", {"size": "512x512"})
    return job


def expire_lease(job_id) -> None:
    past = timezone.now() - timedelta(seconds=1)
    Job.objects.filter(pk=job_id).update(locked_until=past)


def test_stale_worker_cannot_complete(paid_job, owner):
    first = claim_next("worker-a")
    expire_lease(first.pk)
    second = claim_next("worker-b")
    stale = Lease(first.pk, first.attempts, "worker-a")
    current = Lease(second.pk, second.attempts, "worker-b")

    stale_done = queue.complete(stale, lambda: None)
    current_done = queue.complete(current, lambda: None)
    again = queue.complete(current, lambda: None)

    assert second.pk == first.pk
    assert stale_done is False
    assert current_done is True
    assert again is False
    assert LedgerEntry.objects.filter(hold__job=paid_job, kind="capture").count() == 1
    assert Wallet.objects.get(user=owner).balance == 1000 - PRICE


def test_stale_worker_cannot_fail_or_retry(paid_job, owner):
    first = claim_next("worker-a")
    expire_lease(first.pk)
    second = claim_next("worker-b")
    stale = Lease(first.pk, first.attempts, "worker-a")

    failed = queue.fail(stale, "provider_error", "stale")
    with pytest.raises(queue.LeaseLost):
        queue.retry_later(stale, "provider_error", "stale")
    done = queue.complete(Lease(second.pk, second.attempts, "worker-b"), lambda: None)

    assert failed is False
    assert done is True
    assert Hold.objects.get(job=paid_job).status == Hold.Status.CAPTURED
    assert Wallet.objects.get(user=owner).balance == 1000 - PRICE


def test_cancel_after_complete_no_refund(paid_job, owner):
    job = claim_next("worker-a")
    queue.complete(Lease(job.pk, job.attempts, "worker-a"), lambda: None)
    client = client_for(owner)

    first = client.post(f"/api/jobs/{job.pk}/cancel")
    second = client.post(f"/api/jobs/{job.pk}/cancel")

    assert first.status_code == 409
    assert second.status_code == 409
    assert Wallet.objects.get(user=owner).balance == 1000 - PRICE
    assert LedgerEntry.objects.filter(hold__job=job, kind="release").count() == 0


def test_cancel_twice_refunds_once(paid_job, owner):
    client = client_for(owner)

    first = client.post(f"/api/jobs/{paid_job.pk}/cancel")
    second = client.post(f"/api/jobs/{paid_job.pk}/cancel")

    assert first.status_code == 200
    assert second.status_code == 409
    assert Wallet.objects.get(user=owner).balance == 1000
    assert LedgerEntry.objects.filter(hold__job=paid_job, kind="release").count() == 1


def test_cancel_while_running_then_complete(paid_job, owner):
    job = claim_next("worker-a")
    client_for(owner).post(f"/api/jobs/{job.pk}/cancel")

    done = queue.complete(Lease(job.pk, job.attempts, "worker-a"), lambda: None)

    assert done is False
    assert Job.objects.get(pk=job.pk).status == Job.Status.CANCELED
    assert Wallet.objects.get(user=owner).balance == 1000
    assert Hold.objects.get(job=job).status == Hold.Status.RELEASED


# A live worker that waits on a vendor keeps its job. In threaded mode
# (runworker's default concurrency of 32) the control thread renews every
# in-flight lease. With --concurrency 1 only progress writes and should_stop()
# calls renew it, and a blocking vendor call makes neither.


@pytest.fixture
def image_vendor():
    with ScriptedVendor() as fake:
        yield fake


def slow_image_job(vendor, owner, settings, download_seconds=0.0, reply_seconds=0.0):
    """Queue a gpt-image-1 job whose reply or result download is slow."""
    settings.WORKER_LEASE_SECONDS = 1
    settings.DOWNLOAD_READ_TIMEOUT = 5
    content = png_bytes(size="96x96", seed=5)
    if download_seconds:
        pieces = [content[i : i + 200] for i in range(0, len(content), 200)]
        slow = Reply(
            200,
            headers={"Content-Type": "image/png"},
            chunks=pieces,
            pause=download_seconds / len(pieces),
        )
        vendor.route("/slow.png", slow)
        item = {"url": vendor.url + "/slow.png"}
    else:
        item = {"b64_json": base64.b64encode(content).decode()}
    vendor.route(
        "/v1/images/generations", Reply(200, {"data": [item]}), delay=reply_seconds
    )
    provider = add_provider("openai-slow", "openai_images", vendor.url)
    add_image_model(provider)
    fund(owner)
    return submit(client_for(owner), "gpt-image-1", {"size": "1024x1024"})


def watch_claims(monkeypatch, name: str) -> list:
    """After openai_images.`name` returns, record what an intruder could claim."""
    claims = []
    original = getattr(openai_images, name)

    def call_then_look(*args):
        result = original(*args)
        claims.append(claim_next("intruder"))
        if threading.current_thread() is not threading.main_thread():
            connection.close()
        return result

    monkeypatch.setattr(openai_images, name, call_then_look)
    return claims


# These commit for real, so that the renewal from another database connection
# (the threaded worker's gate, or a heartbeat thread) can see the job.
@pytest.mark.django_db(transaction=True)
def test_slow_download_keeps_lease(image_vendor, owner, settings, monkeypatch):
    # A result download longer than WORKER_LEASE_SECONDS (20 s by default, so
    # a 200 MiB video at 10 MiB/s) lets a second worker claim the job.
    job_id = slow_image_job(image_vendor, owner, settings, download_seconds=2.5)
    claims = watch_claims(monkeypatch, "download_for_job")
    worker = Worker(burst=True, concurrency=1)

    worker.run_one(claim_next(worker.worker_id))

    assert claims == [None]
    assert Job.objects.get(pk=job_id).status == Job.Status.COMPLETED


@pytest.mark.django_db(transaction=True)
def test_slow_image_reply_keeps_lease(image_vendor, owner, settings, monkeypatch):
    # OpenAI Images replies only when the image is ready (gpt-image-1 often
    # takes over 20 s, and OPENAI_IMAGES_TIMEOUT allows 600 s). A second worker
    # then claims the job and POSTs the same generation again, so the vendor
    # bills twice and the first result is dropped.
    job_id = slow_image_job(image_vendor, owner, settings, reply_seconds=2.5)
    claims = watch_claims(monkeypatch, "_send")
    worker = Worker(burst=True, concurrency=1)

    worker.run_one(claim_next(worker.worker_id))

    assert claims == [None]
    assert Job.objects.get(pk=job_id).status == Job.Status.COMPLETED


@pytest.mark.django_db(transaction=True)
def test_threaded_worker_keeps_lease(image_vendor, owner, settings, monkeypatch):
    job_id = slow_image_job(image_vendor, owner, settings, reply_seconds=2.5)
    claims = watch_claims(monkeypatch, "_send")

    Worker(burst=True, concurrency=2, listen=False).run()

    assert claims == [None]
    assert Job.objects.get(pk=job_id).status == Job.Status.COMPLETED
