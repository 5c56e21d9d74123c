import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse
from pytest_django.asserts import assertContains, assertRedirects

from billing.models import Hold
from generation.models import Job
from generation.services import submit_job
from generation.worker import Worker

# Worker.run() calls close_old_connections(), which drops the connection inside
# a test transaction, so tests that run the worker commit for real.
pytestmark = pytest.mark.django_db(transaction=True)

REGISTERED = sorted(admin.site._registry, key=lambda model: model._meta.label_lower)
# Models that a completed offline job fills. The others may have no rows.
FILLED_BY_JOB = {
    "accounts.user",
    "accounts.userpreference",
    "assets.asset",
    "assets.blob",
    "billing.hold",
    "billing.ledgerentry",
    "billing.wallet",
    "generation.job",
    "providers.modelspec",
    "providers.provider",
}


def admin_url(model, view: str, *args) -> str:
    meta = model._meta
    return reverse(f"admin:{meta.app_label}_{meta.model_name}_{view}", args=args)


@pytest.fixture
def superuser_page(db) -> Client:
    user = get_user_model().objects.create_superuser(
        "root", "root@example.com", "admin-Password-31"
    )
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def completed_job(catalog, owner) -> Job:
    job, _ = submit_job(owner, "local-image", "a lighthouse", {"size": "512x512"})
    Worker(burst=True).run()
    job.refresh_from_db()
    return job


@pytest.fixture
def queued_job(catalog, owner) -> Job:
    job, _ = submit_job(owner, "local-image", "a lighthouse", {"size": "512x512"})
    return job


def test_job_fills_every_listed_model(completed_job):
    labels = {model._meta.label_lower for model in REGISTERED}

    assert completed_job.status == Job.Status.COMPLETED
    assert labels >= FILLED_BY_JOB
    for model in REGISTERED:
        if model._meta.label_lower in FILLED_BY_JOB:
            assert model.objects.exists(), model._meta.label


def test_every_changelist_opens(superuser_page, completed_job):
    for model in REGISTERED:
        response = superuser_page.get(admin_url(model, "changelist"))

        assert response.status_code == 200, model._meta.label


def test_every_changelist_search_opens(superuser_page, completed_job):
    for model in REGISTERED:
        response = superuser_page.get(admin_url(model, "changelist"), {"q": "x"})

        assert response.status_code == 200, model._meta.label


def test_every_change_page_opens(superuser_page, completed_job):
    opened = set()
    for model in REGISTERED:
        instance = model.objects.first()
        if instance is None:
            continue

        response = superuser_page.get(admin_url(model, "change", instance.pk))

        assert response.status_code == 200, model._meta.label
        opened.add(model._meta.label_lower)
    assert opened >= FILLED_BY_JOB


def test_changelist_search_finds_job(superuser_page, completed_job):
    response = superuser_page.get(admin_url(Job, "changelist"), {"q": "owner"})

    assertContains(response, str(completed_job.pk))


def test_cancel_action_cancels_job(superuser_page, queued_job):
    data = {"action": "cancel_jobs", "_selected_action": [str(queued_job.pk)]}

    response = superuser_page.post(admin_url(Job, "changelist"), data, follow=True)

    assertContains(response, "Canceled 1 jobs.")
    queued_job.refresh_from_db()
    assert queued_job.status == Job.Status.CANCELED
    assert queued_job.hold.status == Hold.Status.RELEASED


def test_cancel_action_skips_finished_job(superuser_page, completed_job):
    data = {"action": "cancel_jobs", "_selected_action": [str(completed_job.pk)]}

    response = superuser_page.post(admin_url(Job, "changelist"), data, follow=True)

    assertContains(response, "Canceled 0 jobs.")
    completed_job.refresh_from_db()
    assert completed_job.status == Job.Status.COMPLETED
    assert completed_job.hold.status == Hold.Status.CAPTURED


def test_non_staff_redirected_from_admin(owner):
    client = Client()
    client.force_login(owner)

    response = client.get("/admin/")

    assertRedirects(
        response, "/admin/login/?next=/admin/", fetch_redirect_response=False
    )


def test_non_staff_redirected_from_changelist(owner):
    client = Client()
    client.force_login(owner)
    url = admin_url(Job, "changelist")

    response = client.get(url)

    assertRedirects(
        response, f"/admin/login/?next={url}", fetch_redirect_response=False
    )
