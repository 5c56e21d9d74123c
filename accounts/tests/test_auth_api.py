import pytest
from django.contrib.auth import get_user_model

from accounts.models import UserPreference
from billing.models import Wallet
from billing.services import topup
from conftest import PASSWORD

User = get_user_model()


def register(client, **overrides):
    body = {"username": "newcomer", "email": "newcomer@example.com"}
    body["password"] = PASSWORD
    body.update(overrides)
    return client.post("/api/auth/register", body, format="json")


def login(client, username: str, password: str = PASSWORD):
    body = {"username": username, "password": password}
    return client.post("/api/auth/login", body, format="json")


def error_codes(errors: list[dict]) -> list[str]:
    return [error["code"] for error in errors]


@pytest.mark.django_db
def test_register_returns_user(anonymous_client) -> None:
    response = register(anonymous_client)

    assert response.status_code == 201
    assert response.data["username"] == "newcomer"
    assert response.data["email"] == "newcomer@example.com"
    assert response.data["balance"] == "0.00"
    assert "password" not in response.data


@pytest.mark.django_db
def test_register_creates_preference_and_wallet(anonymous_client) -> None:
    register(anonymous_client)

    user = User.objects.get(username="newcomer")
    assert UserPreference.objects.filter(user=user).count() == 1
    assert Wallet.objects.filter(user=user, balance=0).count() == 1


@pytest.mark.django_db
def test_register_stores_hashed_password(anonymous_client) -> None:
    register(anonymous_client)

    user = User.objects.get(username="newcomer")
    assert user.password != PASSWORD
    assert user.check_password(PASSWORD)


def test_register_rejects_duplicate_username(anonymous_client, owner) -> None:
    response = register(anonymous_client, username="Owner")

    assert response.status_code == 400
    assert error_codes(response.data["username"]) == ["unique"]
    assert User.objects.filter(username__iexact="owner").count() == 1


@pytest.mark.django_db
def test_register_rejects_weak_password(anonymous_client) -> None:
    response = register(anonymous_client, password="password")

    assert response.status_code == 400
    assert "weak_password" in error_codes(response.data["password"])
    assert response.data["password"][0]["message"]
    assert not User.objects.filter(username="newcomer").exists()


@pytest.mark.django_db
def test_register_requires_email(anonymous_client) -> None:
    body = {"username": "newcomer", "password": PASSWORD}
    response = anonymous_client.post("/api/auth/register", body, format="json")

    assert response.status_code == 400
    assert error_codes(response.data["email"]) == ["required"]
    assert not User.objects.filter(username="newcomer").exists()


@pytest.mark.django_db
def test_register_rejects_invalid_email(anonymous_client) -> None:
    response = register(anonymous_client, email="not-an-address")

    assert response.status_code == 400
    assert error_codes(response.data["email"]) == ["invalid"]


def test_login_returns_token_pair(anonymous_client, owner) -> None:
    response = login(anonymous_client, "owner")

    assert response.status_code == 200
    assert response.data["access"]
    assert response.data["refresh"]


def test_login_rejects_wrong_password(anonymous_client, owner) -> None:
    response = login(anonymous_client, "owner", "wrong-Password-1")

    assert response.status_code == 401
    assert set(response.data) == {"detail", "code"}
    assert response.data["code"] == "no_active_account"
    assert "access" not in response.data


def test_login_token_opens_me(anonymous_client, owner) -> None:
    access = login(anonymous_client, "owner").data["access"]

    anonymous_client.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
    response = anonymous_client.get("/api/auth/me")

    assert response.status_code == 200
    assert response.data["username"] == "owner"


def test_refresh_returns_working_access(anonymous_client, owner) -> None:
    refresh = login(anonymous_client, "owner").data["refresh"]

    response = anonymous_client.post(
        "/api/auth/refresh", {"refresh": refresh}, format="json"
    )
    assert response.status_code == 200
    assert response.data["access"]

    anonymous_client.credentials(HTTP_AUTHORIZATION=f"Bearer {response.data['access']}")
    assert anonymous_client.get("/api/auth/me").data["username"] == "owner"


@pytest.mark.django_db
def test_refresh_rejects_bad_token(anonymous_client) -> None:
    response = anonymous_client.post(
        "/api/auth/refresh", {"refresh": "not-a-token"}, format="json"
    )

    assert response.status_code == 401
    assert response.data["code"] == "token_not_valid"


def test_refresh_rejects_access_token(anonymous_client, owner) -> None:
    access = login(anonymous_client, "owner").data["access"]

    response = anonymous_client.post(
        "/api/auth/refresh", {"refresh": access}, format="json"
    )

    assert response.status_code == 401


def refresh_with(client, refresh: str):
    return client.post("/api/auth/refresh", {"refresh": refresh}, format="json")


def test_refresh_rotates_refresh_token(anonymous_client, owner) -> None:
    first = login(anonymous_client, "owner").data["refresh"]

    rotated = refresh_with(anonymous_client, first)
    reused = refresh_with(anonymous_client, first)

    assert rotated.status_code == 200
    assert rotated.data["refresh"] != first
    assert reused.status_code == 401
    assert reused.data["code"] == "token_not_valid"
    assert refresh_with(anonymous_client, rotated.data["refresh"]).status_code == 200


def test_logout_revokes_refresh_token(anonymous_client, owner) -> None:
    refresh = login(anonymous_client, "owner").data["refresh"]

    response = anonymous_client.post(
        "/api/auth/logout", {"refresh": refresh}, format="json"
    )

    assert response.status_code == 204
    assert refresh_with(anonymous_client, refresh).status_code == 401


def test_logout_leaves_other_sessions(anonymous_client, owner) -> None:
    # Each login is its own session: logging one out keeps the other.
    phone = login(anonymous_client, "owner").data["refresh"]
    laptop = login(anonymous_client, "owner").data["refresh"]

    anonymous_client.post("/api/auth/logout", {"refresh": phone}, format="json")

    assert refresh_with(anonymous_client, laptop).status_code == 200


@pytest.mark.django_db
def test_logout_rejects_bad_token(anonymous_client) -> None:
    response = anonymous_client.post(
        "/api/auth/logout", {"refresh": "not-a-token"}, format="json"
    )

    assert response.status_code == 401
    assert response.data["code"] == "token_not_valid"


@pytest.mark.django_db
def test_logout_requires_refresh(anonymous_client) -> None:
    response = anonymous_client.post("/api/auth/logout", {}, format="json")

    assert response.status_code == 400
    assert error_codes(response.data["refresh"]) == ["required"]


def test_logout_twice_rejected(anonymous_client, owner) -> None:
    refresh = login(anonymous_client, "owner").data["refresh"]
    body = {"refresh": refresh}

    anonymous_client.post("/api/auth/logout", body, format="json")
    again = anonymous_client.post("/api/auth/logout", body, format="json")

    assert again.status_code == 401


def test_stranger_logout_leaves_owner(anonymous_client, owner, stranger) -> None:
    owner_refresh = login(anonymous_client, "owner").data["refresh"]
    stranger_refresh = login(anonymous_client, stranger.username).data["refresh"]

    response = anonymous_client.post(
        "/api/auth/logout", {"refresh": stranger_refresh}, format="json"
    )

    assert response.status_code == 204
    assert refresh_with(anonymous_client, owner_refresh).status_code == 200


def test_staff_logout_own_token(anonymous_client, staff) -> None:
    refresh = login(anonymous_client, staff.username).data["refresh"]

    response = anonymous_client.post(
        "/api/auth/logout", {"refresh": refresh}, format="json"
    )

    assert response.status_code == 204
    assert refresh_with(anonymous_client, refresh).status_code == 401


def test_me_shows_own_data(owner_client, owner) -> None:
    topup(owner, 1250, "test")

    response = owner_client.get("/api/auth/me")

    assert response.status_code == 200
    assert response.data["id"] == str(owner.pk)
    assert response.data["username"] == "owner"
    assert response.data["email"] == "owner@example.com"
    assert response.data["is_staff"] is False
    assert response.data["balance"] == "12.50"
    assert response.data["preference"]["theme"] == "system"


def test_me_shows_only_caller(stranger_client, owner) -> None:
    topup(owner, 1250, "test")

    response = stranger_client.get("/api/auth/me")

    assert response.data["username"] == "stranger"
    assert response.data["balance"] == "0.00"


@pytest.mark.django_db
def test_me_rejects_anonymous(anonymous_client) -> None:
    response = anonymous_client.get("/api/auth/me")

    assert response.status_code == 401
    assert response.data["code"] == "not_authenticated"
    assert response.data["detail"]


@pytest.mark.django_db
def test_me_rejects_garbled_token(anonymous_client) -> None:
    anonymous_client.credentials(HTTP_AUTHORIZATION="Bearer not-a-token")

    response = anonymous_client.get("/api/auth/me")

    assert response.status_code == 401
