"""A stranger probing another user's jobs through the API and the pages."""

import base64
import json
import uuid

import pytest
from django.test import Client
from rest_framework_simplejwt.tokens import RefreshToken

from assets.tests.test_assets_api import make_asset
from conftest import client_for
from generation.models import Job
from generation.services import submit_job
from providers.models import ModelSpec, Provider

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def job(catalog, owner) -> Job:
    job, _ = submit_job(
        owner, "local-image", "owner's secret prompt", {"size": "512x512"}
    )
    return job


def page_client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_api_job_hidden_from_stranger(job, stranger_client):
    missing = stranger_client.get(f"/api/jobs/{uuid.uuid4()}")
    foreign = stranger_client.get(f"/api/jobs/{job.pk}")

    assert foreign.status_code == 404
    assert foreign.json() == missing.json()


def test_api_list_hides_foreign_jobs(job, stranger_client):
    response = stranger_client.get("/api/jobs?limit=1000&offset=0")

    assert response.status_code == 200
    assert response.data["count"] == 0


def test_api_cancel_foreign_job(job, stranger_client):
    missing = stranger_client.post(f"/api/jobs/{uuid.uuid4()}/cancel")
    foreign = stranger_client.post(f"/api/jobs/{job.pk}/cancel")

    assert foreign.status_code == 404
    assert foreign.json() == missing.json()
    assert Job.objects.get(pk=job.pk).status == Job.Status.QUEUED


@pytest.mark.parametrize("path", ["/api/jobs", "/api/assets", "/api/auth/me"])
def test_api_needs_login(job, anonymous_client, path):
    assert anonymous_client.get(path).status_code == 401


def test_api_rejects_forged_token(job, owner):
    client = client_for(owner)
    header = client._credentials["HTTP_AUTHORIZATION"]
    head, payload, _signature = header.removeprefix("Bearer ").split(".")
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {head}.{payload}.AAAA")

    assert client.get(f"/api/jobs/{job.pk}").status_code == 401


def test_api_rejects_unsigned_token(job, owner):
    def part(data: dict) -> str:
        raw = base64.urlsafe_b64encode(json.dumps(data).encode()).decode()
        return raw.rstrip("=")

    header = part({"alg": "none", "typ": "JWT"})
    claims = part({"user_id": str(owner.pk), "token_type": "access"})
    token = f"{header}.{claims}."
    client = client_for(None)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")

    assert client.get(f"/api/jobs/{job.pk}").status_code == 401


def test_refresh_token_not_access(job, owner):
    client = client_for(None)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {RefreshToken.for_user(owner)}")

    assert client.get(f"/api/jobs/{job.pk}").status_code == 401


def test_deactivated_user_refresh_rejected(owner, anonymous_client):
    refresh = str(RefreshToken.for_user(owner))
    owner.is_active = False
    owner.save()

    response = anonymous_client.post(
        "/api/auth/refresh", {"refresh": refresh}, format="json"
    )

    assert response.status_code == 401


@pytest.mark.parametrize("headers", [{}, HTMX])
def test_page_job_hidden_from_stranger(job, stranger, headers):
    client = page_client(stranger)
    missing = client.get(f"/jobs/{uuid.uuid4()}", **headers)
    foreign = client.get(f"/jobs/{job.pk}", **headers)

    assert foreign.status_code == 404
    assert missing.status_code == 404
    assert b"secret prompt" not in foreign.content


@pytest.mark.parametrize("headers", [{}, HTMX])
def test_page_cancel_foreign_job(job, stranger, headers):
    response = page_client(stranger).post(f"/jobs/{job.pk}/cancel", **headers)

    assert response.status_code == 404
    assert Job.objects.get(pk=job.pk).status == Job.Status.QUEUED


def test_page_cancel_needs_csrf(job, owner):
    client = Client(enforce_csrf_checks=True)
    client.force_login(owner)

    response = client.post(f"/jobs/{job.pk}/cancel")

    assert response.status_code == 403
    assert Job.objects.get(pk=job.pk).status == Job.Status.QUEUED


def test_generator_page_lists_own_jobs_only(job, stranger):
    response = page_client(stranger).get("/")

    assert response.status_code == 200
    assert b"secret prompt" not in response.content


def test_reference_to_foreign_asset_api(catalog, owner, stranger_client, settings):
    foreign = make_asset(owner)
    body = {
        "model": "gpt-image-1",
        "prompt": "copy this",
        "params": {"reference_asset": str(foreign.pk)},
    }
    # Enable a model that takes a reference image without calling any vendor.
    Provider.objects.filter(name="openai").update(enabled=True)
    ModelSpec.objects.filter(name="gpt-image-1").update(price=0)

    response = stranger_client.post("/api/jobs", body, format="json")

    assert response.status_code == 400
    assert response.data["params"]["reference_asset"][0]["code"] == "not_found"


@pytest.mark.parametrize(
    "form",
    [
        lambda pk: pk.hex,
        lambda pk: "{" + str(pk) + "}",
        lambda pk: f"urn:uuid:{pk}",
        lambda pk: str(pk).upper(),
    ],
)
def test_reference_id_spellings_foreign(catalog, owner, stranger_client, form):
    Provider.objects.filter(name="openai").update(enabled=True)
    ModelSpec.objects.filter(name="gpt-image-1").update(price=0)
    foreign = make_asset(owner)
    body = {
        "model": "gpt-image-1",
        "prompt": "copy this",
        "params": {"reference_asset": form(foreign.pk)},
    }

    response = stranger_client.post("/api/jobs", body, format="json")

    assert response.status_code == 400


def test_admin_closed_to_users(owner):
    response = page_client(owner).get("/admin/")

    assert response.status_code == 302
    assert response.url.startswith("/admin/login/")


@pytest.mark.parametrize(
    "path",
    [
        "/admin/billing/wallet/",
        "/admin/generation/job/",
        "/admin/providers/provider/",
        "/admin/generation/providercall/",
    ],
)
def test_admin_pages_closed_to_users(owner, path):
    response = page_client(owner).get(path)

    assert response.status_code == 302
