"""Per-IP and per-user rate limits on the API, counted in the configured cache."""

import pytest
from django.core.cache import cache
from django.test import Client

from generation.models import Job

pytestmark = pytest.mark.django_db

LOGIN_URL = "/api/auth/login"
JOBS_URL = "/api/jobs"
WRONG_LOGIN = {"username": "nobody", "password": "not-the-password"}
# NOTE: django-ratelimit counts in fixed windows, so a window that ends between
# two requests of one test lets one extra request through. The chance is about
# the test's duration divided by the window (10 s for bursts).


@pytest.fixture(autouse=True)
def rate_limits(settings):
    settings.RATELIMIT_ENABLE = True
    settings.RATE_LIMIT_PER_MINUTE = 3
    settings.BURST_LIMIT = 100
    # A fast hasher keeps each login well inside one rate-limit window.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    cache.clear()
    yield settings
    cache.clear()


def login(client, address: str = "10.0.0.1"):
    return client.post(LOGIN_URL, WRONG_LOGIN, format="json", REMOTE_ADDR=address)


def submit(client):
    job = {
        "model": "local-image",
        "prompt": "a lighthouse",
        "params": {"size": "512x512"},
    }
    return client.post(JOBS_URL, job, format="json")


def test_login_limited_per_minute(anonymous_client):
    statuses = [login(anonymous_client).status_code for _ in range(3)]

    response = login(anonymous_client)

    assert statuses == [401, 401, 401]
    assert response.status_code == 429
    assert set(response.json()) == {"detail", "code"}
    assert response.json()["code"] == "throttled"


def test_login_limited_per_burst(anonymous_client, rate_limits):
    rate_limits.RATE_LIMIT_PER_MINUTE = 100
    rate_limits.BURST_LIMIT = 2
    statuses = [login(anonymous_client).status_code for _ in range(2)]

    response = login(anonymous_client)

    assert statuses == [401, 401]
    assert response.status_code == 429
    assert response.json()["code"] == "throttled"


def test_limited_response_has_retry_after(anonymous_client, rate_limits):
    rate_limits.RATE_LIMIT_PER_MINUTE = 100
    rate_limits.BURST_LIMIT = 1
    login(anonymous_client)

    response = login(anonymous_client)

    assert response.status_code == 429
    assert 1 <= int(response["Retry-After"]) <= 10


def test_minute_limit_retry_after(anonymous_client):
    for _ in range(3):
        login(anonymous_client)

    response = login(anonymous_client)

    assert response.status_code == 429
    assert 1 <= int(response["Retry-After"]) <= 60


def test_page_and_api_share_budget(catalog, owner, owner_client):
    page = Client()
    page.force_login(owner)
    form = {"model": "local-image", "prompt": "a lighthouse", "size": "512x512"}
    page_statuses = [page.post("/", form).status_code for _ in range(2)]

    api_statuses = [submit(owner_client).status_code for _ in range(2)]

    assert page_statuses == [302, 302]
    assert api_statuses == [201, 429]
    assert Job.objects.filter(owner=owner).count() == 3


def test_login_limit_is_per_address(anonymous_client):
    for _ in range(4):
        login(anonymous_client, "10.0.0.1")

    assert login(anonymous_client, "10.0.0.1").status_code == 429
    assert login(anonymous_client, "10.0.0.2").status_code == 401


def test_login_limit_off_when_disabled(anonymous_client, rate_limits):
    rate_limits.RATELIMIT_ENABLE = False

    statuses = {login(anonymous_client).status_code for _ in range(5)}

    assert statuses == {401}


def test_job_submit_limited_per_user(catalog, owner_client, owner, stranger_client):
    statuses = [submit(owner_client).status_code for _ in range(3)]

    limited = submit(owner_client)

    assert statuses == [201, 201, 201]
    assert limited.status_code == 429
    assert limited.json()["code"] == "throttled"
    assert Job.objects.filter(owner=owner).count() == 3
    assert submit(stranger_client).status_code == 201


def test_health_reports_ok(anonymous_client):
    response = anonymous_client.get("/api/health")

    assert response.status_code == 200
    assert response.json()["status"] == "ok"


def test_health_not_rate_limited(anonymous_client):
    statuses = {anonymous_client.get("/api/health").status_code for _ in range(6)}

    assert statuses == {200}
