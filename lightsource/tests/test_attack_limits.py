"""Getting around the log-in and submit rate limits through the HTML pages."""

import pytest
from django.core.cache import cache
from django.test import Client

from generation.models import Job

pytestmark = pytest.mark.django_db

ADDRESS = "10.9.8.7"


@pytest.fixture(autouse=True)
def rate_limits(settings):
    settings.RATELIMIT_ENABLE = True
    settings.RATE_LIMIT_PER_MINUTE = 3
    settings.BURST_LIMIT = 100
    cache.clear()
    yield settings
    cache.clear()


def test_api_login_limited(anonymous_client, owner):
    wrong = {"username": "owner", "password": "guess"}
    statuses = [
        anonymous_client.post(
            "/api/auth/login", wrong, format="json", REMOTE_ADDR=ADDRESS
        ).status_code
        for _ in range(5)
    ]

    assert statuses == [401, 401, 401, 429, 429]


def test_page_login_limited(owner):
    # The same password guesses through the HTML form are never limited.
    client = Client()
    wrong = {"username": "owner", "password": "guess"}
    statuses = [
        client.post("/login", wrong, REMOTE_ADDR=ADDRESS).status_code for _ in range(5)
    ]

    assert statuses[3:] == [429, 429]


def test_page_signup_limited(db):
    client = Client()
    statuses = []
    for index in range(5):
        form = {
            "username": f"bot{index}",
            "email": f"bot{index}@example.com",
            "password1": "correct-Horse-battery-9",
            "password2": "correct-Horse-battery-9",
        }
        statuses.append(client.post("/signup", form, REMOTE_ADDR=ADDRESS).status_code)
        client.cookies.clear()

    assert statuses[3:] == [429, 429]


def test_page_submit_limited(catalog, owner):
    client = Client()
    client.force_login(owner)
    form = {"model": "local-image", "prompt": "a lighthouse", "size": "512x512"}
    statuses = [client.post("/", form).status_code for _ in range(5)]

    assert statuses[3:] == [429, 429]
    assert Job.objects.filter(owner=owner).count() == 3
