"""Malformed and oversized submissions to POST /api/jobs and the auth endpoints."""

import pytest
from rest_framework.test import APIClient

from generation.models import Job

pytestmark = pytest.mark.django_db

DEEP = 100_000


def post_raw(client, path: str, body, content_type: str = "application/json"):
    return client.generic("POST", path, body, content_type=content_type)


def post_job(client, params=None, prompt="a lighthouse", model="local-image"):
    body = {"model": model, "prompt": prompt, "params": params or {}}
    return client.post("/api/jobs", body, format="json")


@pytest.fixture
def quiet_client(owner):
    """An authenticated client that returns 500 responses instead of raising."""
    from rest_framework_simplejwt.tokens import RefreshToken

    client = APIClient(raise_request_exception=False)
    token = RefreshToken.for_user(owner).access_token
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


@pytest.mark.parametrize("path", ["/api/auth/register", "/api/auth/login"])
def test_deeply_nested_json_anonymous(db, path):
    # json.loads raises RecursionError, which DRF's JSONParser does not catch.
    client = APIClient(raise_request_exception=False)
    body = '{"username": ' + "[" * DEEP + "]" * DEEP + "}"

    response = post_raw(client, path, body)

    assert response.status_code == 400


def test_deeply_nested_params(catalog, quiet_client):
    body = '{"model": "local-image", "prompt": "x", "params": ' + "[" * DEEP
    body += "]" * DEEP + "}"

    response = post_raw(quiet_client, "/api/jobs", body)

    assert response.status_code == 400


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"size": "99999x99999"}, "size"),
        ({"size": "512x512\n"}, "size"),
        ({"size": ["512x512"]}, "size"),
        ({"seed": 2**31}, "seed"),
        ({"seed": -1}, "seed"),
        ({"seed": "5"}, "seed"),
        ({"seed": 1.0}, "seed"),
        ({"n": 10**30}, "n"),
        ({"n": "2"}, "n"),
        ({"steps": 30}, "steps"),
        ({"reference_asset": "x"}, "reference_asset"),
        ({"negative_prompt": "a\x00b"}, "negative_prompt"),
        ({"negative_prompt": ["x"]}, "negative_prompt"),
        ({"__proto__": 1}, "__proto__"),
        ({"remote_model": "gpt-image-1"}, "remote_model"),
    ],
)
def test_bad_params_rejected(catalog, owner, owner_client, params, field):
    response = post_job(owner_client, {"size": "512x512", **params})

    assert response.status_code == 400
    assert field in response.data["params"]
    assert not Job.objects.filter(owner=owner).exists()


@pytest.mark.parametrize("params", ["[]", "false", "0", '""', '"size=512x512"', "7"])
def test_params_not_object(catalog, owner, owner_client, params):
    # submit_job() replaces any falsy params with {}, so [], false, 0 and ""
    # skip the "Params must be a JSON object" check that "x" and 7 get.
    body = '{"model": "local-image", "prompt": "x", "params": ' + params + "}"

    response = post_raw(owner_client, "/api/jobs", body)

    assert response.status_code == 400
    assert not Job.objects.filter(owner=owner).exists()


@pytest.mark.parametrize(
    "prompt",
    ["", "   \n\t", "a\x00b", "x" * 2001, None, ["a"], {"a": 1}, True],
)
def test_bad_prompts_rejected(catalog, owner, owner_client, prompt):
    response = post_job(owner_client, {"size": "512x512"}, prompt=prompt)

    assert response.status_code == 400
    assert not Job.objects.filter(owner=owner).exists()


def test_body_over_upload_limit(catalog, owner, quiet_client):
    body = '{"model": "local-image", "prompt": "' + "x" * 3_000_000 + '"}'

    response = post_raw(quiet_client, "/api/jobs", body)

    assert response.status_code == 400
    assert not Job.objects.filter(owner=owner).exists()


def test_invalid_utf8_rejected(catalog, owner, owner_client):
    body = b'{"model": "local-image", "prompt": "\xff\xfe\xc0"}'

    response = post_raw(owner_client, "/api/jobs", body)

    assert response.status_code == 400


@pytest.mark.parametrize(
    "model", ["flux", "sora-2", "../local-image", "local-image\x00"]
)
def test_model_without_key_unavailable(catalog, owner, owner_client, model):
    response = post_job(owner_client, {"size": "512x512"}, model=model)

    assert response.status_code == 400


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/xml", "application/x-yaml"]
)
def test_other_content_types_refused(catalog, owner_client, content_type):
    body = '{"model": "local-image", "prompt": "x"}'

    response = post_raw(owner_client, "/api/jobs", body, content_type)

    assert response.status_code == 415


def test_long_idempotency_key_rejected(catalog, owner, owner_client):
    response = owner_client.post(
        "/api/jobs",
        {"model": "local-image", "prompt": "x"},
        format="json",
        HTTP_IDEMPOTENCY_KEY="k" * 256,
    )

    assert response.status_code == 400
    assert not Job.objects.filter(owner=owner).exists()
