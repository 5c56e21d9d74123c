import uuid

import pytest
from django.contrib.auth import get_user_model
from pytest_django.asserts import assertContains, assertNotContains, assertRedirects

from accounts.models import UserPreference
from billing.models import Wallet
from conftest import PASSWORD

NEW_PASSWORD = "amber-Lantern-river-42"


def signup_data(**changes: str) -> dict:
    data = {
        "username": "newcomer",
        "email": "newcomer@example.com",
        "password1": NEW_PASSWORD,
        "password2": NEW_PASSWORD,
    }
    data.update(changes)
    return data


@pytest.mark.django_db
def test_signup_page_renders(client):
    response = client.get("/signup")

    assert response.status_code == 200
    assertContains(response, "Create an account")
    assertContains(response, 'name="password2"')


@pytest.mark.django_db
def test_visitor_header_links_login_and_signup(client):
    response = client.get("/login")

    assertContains(response, '<a href="/login">Log in</a>', html=True)
    assertContains(response, '<a href="/signup">Sign up</a>', html=True)
    assertNotContains(response, "Log out")


@pytest.mark.django_db
def test_signup_logs_in_and_redirects(client):
    response = client.post("/signup", signup_data())

    assertRedirects(response, "/", fetch_redirect_response=False)
    user = get_user_model().objects.get(username="newcomer")
    assert client.session["_auth_user_id"] == str(user.pk)
    assert user.email == "newcomer@example.com"
    assert user.check_password(NEW_PASSWORD)


@pytest.mark.django_db
def test_signup_creates_preference_and_wallet(client):
    client.post("/signup", signup_data())

    user = get_user_model().objects.get(username="newcomer")
    assert UserPreference.objects.filter(user=user).exists()
    assert Wallet.objects.get(user=user).balance == 0


@pytest.mark.django_db
def test_signup_password_mismatch_shows_error(client):
    response = client.post("/signup", signup_data(password2="another-Password-77"))

    assert response.status_code == 200
    assertContains(response, "The two password fields didn\u2019t match.")
    assert not get_user_model().objects.filter(username="newcomer").exists()
    assert "_auth_user_id" not in client.session


@pytest.mark.django_db
def test_signup_taken_username_shows_error(client, owner):
    response = client.post("/signup", signup_data(username="owner"))

    assert response.status_code == 200
    assertContains(response, "A user with that username already exists.")
    assert get_user_model().objects.filter(username="owner").count() == 1
    assert "_auth_user_id" not in client.session


@pytest.mark.django_db
def test_signup_weak_password_shows_error(client):
    response = client.post("/signup", signup_data(password1="123", password2="123"))

    assert response.status_code == 200
    assertContains(response, "This password is too short.")
    assert not get_user_model().objects.filter(username="newcomer").exists()


@pytest.mark.django_db
def test_login_page_renders(client):
    response = client.get("/login")

    assert response.status_code == 200
    assertContains(response, "<h1>Log in</h1>", html=True)
    assertContains(response, 'name="username"')


@pytest.mark.django_db
def test_login_right_password_redirects(client, owner):
    response = client.post("/login", {"username": "owner", "password": PASSWORD})

    assertRedirects(response, "/", fetch_redirect_response=False)
    assert client.session["_auth_user_id"] == str(owner.pk)


@pytest.mark.django_db
def test_login_follows_next(client, owner):
    data = {"username": "owner", "password": PASSWORD, "next": "/library"}
    response = client.post("/login", data)

    assertRedirects(response, "/library", fetch_redirect_response=False)


@pytest.mark.django_db
def test_login_wrong_password_shows_error(client, owner):
    response = client.post("/login", {"username": "owner", "password": "wrong-one"})

    assert response.status_code == 200
    assertContains(response, "Please enter a correct username and password.")
    assert "_auth_user_id" not in client.session


@pytest.mark.django_db
def test_logout_post_logs_out(client, owner):
    client.force_login(owner)

    response = client.post("/logout")

    assertRedirects(response, "/login", fetch_redirect_response=False)
    assert "_auth_user_id" not in client.session
    assertRedirects(client.get("/"), "/login?next=/", fetch_redirect_response=False)


@pytest.mark.django_db
def test_logout_get_not_allowed(client, owner):
    client.force_login(owner)

    response = client.get("/logout")

    assert response.status_code == 405
    assert client.session["_auth_user_id"] == str(owner.pk)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "path", ["/", "/library", f"/jobs/{uuid.uuid4()}", f"/library/{uuid.uuid4()}"]
)
def test_anonymous_redirected_to_login(client, path):
    response = client.get(path)

    assertRedirects(response, f"/login?next={path}", fetch_redirect_response=False)


@pytest.mark.django_db
def test_signed_in_user_skips_signup(client, owner):
    client.force_login(owner)

    response = client.get("/signup")

    assertRedirects(response, "/", fetch_redirect_response=False)
