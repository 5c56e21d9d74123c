"""Fixtures shared by every app's tests."""

import pytest
from django.contrib.auth import get_user_model
from django.utils import translation
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import RefreshToken

from accounts.services import register_user
from providers.catalog import DEFAULT_CATALOG, load_catalog

PASSWORD = "correct-Horse-battery-9"


@pytest.fixture(autouse=True)
def _test_settings(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.STORAGE_BASE = settings.MEDIA_ROOT
    settings.LOCAL_RENDER_DELAY_SECONDS = 0
    settings.RATELIMIT_ENABLE = False
    # PBKDF2 at Django's default cost dominated test time: every user created or
    # logged in paid for it.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {
            "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        },
    }
    yield
    # A request activates its user's language for the rest of the thread, so a
    # Chinese request would otherwise leave later tests in Chinese.
    translation.activate(settings.LANGUAGE_CODE)


@pytest.fixture
def catalog(db):
    load_catalog(DEFAULT_CATALOG)


def make_user(username: str, staff: bool = False):
    user = register_user(username, f"{username}@example.com", PASSWORD)
    if staff:
        get_user_model().objects.filter(pk=user.pk).update(is_staff=True)
        user.refresh_from_db()
    return user


@pytest.fixture
def owner(db):
    return make_user("owner")


@pytest.fixture
def stranger(db):
    return make_user("stranger")


@pytest.fixture
def staff(db):
    return make_user("staff", staff=True)


def client_for(user) -> APIClient:
    client = APIClient()
    if user is not None:
        token = RefreshToken.for_user(user).access_token
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


@pytest.fixture
def owner_client(owner):
    return client_for(owner)


@pytest.fixture
def stranger_client(stranger):
    return client_for(stranger)


@pytest.fixture
def staff_client(staff):
    return client_for(staff)


@pytest.fixture
def anonymous_client():
    return APIClient()
