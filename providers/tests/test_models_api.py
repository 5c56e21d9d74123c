"""GET /api/models: the catalog as API users see it."""

import pytest

from providers.models import ModelSpec

pytestmark = pytest.mark.django_db


@pytest.fixture
def names(catalog):
    return set(ModelSpec.objects.available().values_list("name", flat=True))


@pytest.mark.parametrize(
    "client_name", ["owner_client", "stranger_client", "staff_client"]
)
def test_models_lists_available(request, client_name, names):
    client = request.getfixturevalue(client_name)

    response = client.get("/api/models")

    assert response.status_code == 200
    assert {model["name"] for model in response.json()} == names


def test_models_entry_shape(owner_client, catalog):
    response = owner_client.get("/api/models")
    image = next(m for m in response.json() if m["name"] == "local-image")

    assert image["kind"] == "image"
    assert image["provider_kind"] == "local"
    assert image["price"] == "0.00"
    assert image["price_unit"] == "job"
    assert image["sizes"][0] == "1024x1024"
    assert image["max_n"] == 4


def test_models_hides_disabled(owner_client, catalog):
    ModelSpec.objects.filter(name="local-video").update(enabled=False)

    response = owner_client.get("/api/models")

    assert "local-video" not in {model["name"] for model in response.json()}


def test_models_anonymous_unauthorized(anonymous_client, catalog):
    response = anonymous_client.get("/api/models")

    assert response.status_code == 401


def test_unknown_api_path_json_404(owner_client):
    response = owner_client.get("/api/nothing/here")

    assert response.status_code == 404
    assert response.json() == {"detail": "Not found.", "code": "not_found"}
