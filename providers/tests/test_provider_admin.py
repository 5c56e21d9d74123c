"""Provider accounts in admin: a write-only key and a cheap connection test."""

import pytest
from django.contrib.auth import get_user_model

from providers.models import Provider
from providers.tests.fakes.scripted import ScriptedVendor
from providers.tests.fakes.server import Reply

pytestmark = pytest.mark.django_db

SECRET = "sk-test-0123456789abcdef"


@pytest.fixture
def admin_client(client):
    user = get_user_model().objects.create_superuser("root", "r@example.com", "pw")
    client.force_login(user)
    return client


@pytest.fixture
def provider():
    return Provider.objects.create(
        name="gateway",
        kind=Provider.Kind.SORA2_CHAT,
        base_url="http://127.0.0.1:9",
        api_key=SECRET,
        enabled=True,
    )


def form_data(provider: Provider, **changes) -> dict:
    data = {
        "name": provider.name,
        "kind": provider.kind,
        "base_url": provider.base_url,
        "api_key_env": "",
        "enabled": "on",
        "new_api_key": "",
    }
    data.update(changes)
    return data


def test_change_page_never_shows_key(admin_client, provider):
    response = admin_client.get(f"/admin/providers/provider/{provider.pk}/change/")

    assert response.status_code == 200
    assert SECRET not in response.content.decode()
    assert "…cdef" in response.content.decode()


def test_changelist_masks_key(admin_client, provider):
    response = admin_client.get("/admin/providers/provider/")

    assert SECRET not in response.content.decode()
    assert "…cdef" in response.content.decode()


def test_blank_key_keeps_saved_key(admin_client, provider):
    url = f"/admin/providers/provider/{provider.pk}/change/"

    response = admin_client.post(url, form_data(provider))

    assert response.status_code == 302
    provider.refresh_from_db()
    assert provider.api_key == SECRET


def test_new_key_replaces_saved_key(admin_client, provider):
    url = f"/admin/providers/provider/{provider.pk}/change/"

    admin_client.post(url, form_data(provider, new_api_key="sk-new-key-99999999"))

    provider.refresh_from_db()
    assert provider.api_key == "sk-new-key-99999999"


def test_clear_key_removes_saved_key(admin_client, provider):
    url = f"/admin/providers/provider/{provider.pk}/change/"

    admin_client.post(url, form_data(provider, clear_api_key="on"))

    provider.refresh_from_db()
    assert provider.api_key == ""


def run_test_action(admin_client, provider) -> str:
    """Run the admin action and return its messages, one per line."""
    response = admin_client.post(
        "/admin/providers/provider/",
        {"action": "test_connection", "_selected_action": [str(provider.pk)]},
        follow=True,
    )
    return "\n".join(str(message) for message in response.context["messages"])


def test_connection_action_lists_models(admin_client, provider):
    models = {"object": "list", "data": [{"id": "sora-video-10s"}, {"id": "x"}]}
    with ScriptedVendor() as fake:
        fake.route("/v1/models", Reply(200, models))
        Provider.objects.filter(pk=provider.pk).update(base_url=fake.url)

        messages = run_test_action(admin_client, provider)
        sent = fake.requests

    assert messages == "gateway: Connected: 2 models listed."
    assert [r.path for r in sent] == ["/v1/models"]
    assert sent[0].headers["Authorization"] == f"Bearer {SECRET}"


def test_connection_action_reports_rejected_key(admin_client, provider):
    with ScriptedVendor() as fake:
        fake.route("/v1/models", Reply(401, {"detail": "Invalid API key"}))
        Provider.objects.filter(pk=provider.pk).update(base_url=fake.url)

        messages = run_test_action(admin_client, provider)

    assert messages == "gateway: The key was rejected (HTTP 401)."


def test_connection_action_reports_unreachable(admin_client, provider):
    messages = run_test_action(admin_client, provider)

    assert messages.startswith("gateway: Could not reach http://127.0.0.1:9/v1/models")


def test_connection_action_local_needs_nothing(admin_client):
    local = Provider.objects.create(name="local", kind="local", enabled=True)

    messages = run_test_action(admin_client, local)

    assert messages == "local: The offline renderer needs no connection."
