"""The `loadcatalog` command: upserts, rejected entries and vendor keys."""

import json
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from providers.catalog import DEFAULT_CATALOG
from providers.models import ModelSpec, Provider

pytestmark = pytest.mark.django_db

KEY_VARIABLE = "LIGHTSOURCE_TEST_VENDOR_KEY"
LOCAL_PROVIDER = {"name": "local", "kind": "local", "enabled": True}
VENDOR_PROVIDER = {
    "name": "test-vendor",
    "kind": "openai_images",
    "base_url": "https://vendor.invalid/v1",
    "api_key_env": KEY_VARIABLE,
    "enabled": True,
}


def image_model(**fields) -> dict:
    entry = {
        "name": "test-image",
        "provider": "local",
        "kind": "image",
        "remote_name": "test-image-v1",
        "price": "1.00",
        "sizes": ["512x512"],
    }
    entry.update(fields)
    return entry


@pytest.fixture
def write_catalog(tmp_path):
    def write(providers=(LOCAL_PROVIDER,), models=()) -> Path:
        path = tmp_path / "catalog.json"
        catalog = {"providers": list(providers), "models": list(models)}
        path.write_text(json.dumps(catalog), encoding="utf-8")
        return path

    return write


def load_catalog_file(path) -> str:
    output = StringIO()
    call_command("loadcatalog", str(path), stdout=output)
    return output.getvalue()


def catalog_snapshot() -> tuple[list, list]:
    providers = Provider.objects.order_by("name").values()
    models = ModelSpec.objects.order_by("name").values()
    return list(providers), list(models)


@pytest.fixture
def no_vendor_key(monkeypatch):
    monkeypatch.delenv(KEY_VARIABLE, raising=False)


def test_loadcatalog_loads_default_catalog(monkeypatch):
    shipped = json.loads(DEFAULT_CATALOG.read_text(encoding="utf-8"))
    for entry in shipped["providers"]:
        if entry.get("api_key_env"):
            monkeypatch.delenv(entry["api_key_env"], raising=False)

    call_command("loadcatalog", stdout=StringIO())

    local = Provider.objects.get(name="local")
    assert local.kind == Provider.Kind.LOCAL
    assert local.enabled is True
    assert ModelSpec.objects.get(name="local-image").kind == ModelSpec.Kind.IMAGE
    assert ModelSpec.objects.get(name="local-video").kind == ModelSpec.Kind.VIDEO
    assert set(ModelSpec.objects.available().values_list("name", flat=True)) >= {
        "local-image",
        "local-video",
    }
    vendors = Provider.objects.exclude(kind=Provider.Kind.LOCAL)
    assert not vendors.filter(enabled=True).exists()


def test_loadcatalog_reports_counts(write_catalog):
    output = load_catalog_file(write_catalog(models=[image_model()]))

    assert "1 providers and 1 models" in output


def test_loadcatalog_stores_model_fields(write_catalog):
    entry = image_model(price=2.5, max_n=2, durations=[], supports=["negative_prompt"])

    load_catalog_file(write_catalog(models=[entry]))

    model = ModelSpec.objects.get(name="test-image")
    assert model.provider.name == "local"
    assert model.remote_name == "test-image-v1"
    assert model.price == 250
    assert model.sizes == ["512x512"]
    assert model.max_n == 2
    assert model.supports == ["negative_prompt"]


def test_loadcatalog_updates_changed_price(write_catalog):
    load_catalog_file(write_catalog(models=[image_model(price="1.00")]))

    load_catalog_file(write_catalog(models=[image_model(price="2.50")]))

    assert ModelSpec.objects.get(name="test-image").price == 250


def test_loadcatalog_twice_creates_no_duplicates(write_catalog):
    path = write_catalog(models=[image_model()])
    load_catalog_file(path)
    first = catalog_snapshot()

    load_catalog_file(path)

    providers, models = catalog_snapshot()
    assert [p["id"] for p in providers] == [p["id"] for p in first[0]]
    assert [m["id"] for m in models] == [m["id"] for m in first[1]]


def test_loadcatalog_leaves_absent_entries(write_catalog):
    call_command("loadcatalog", stdout=StringIO())
    video_before = ModelSpec.objects.filter(name="local-video").values().get()

    load_catalog_file(write_catalog(models=[image_model()]))

    assert ModelSpec.objects.filter(name="local-video").values().get() == video_before
    assert ModelSpec.objects.filter(name="local-image").exists()
    assert ModelSpec.objects.filter(name="test-image").exists()


def test_loadcatalog_stores_price_unit(write_catalog):
    video = image_model(
        name="test-video", kind="video", durations=[4, 8], price_unit="second"
    )
    load_catalog_file(write_catalog(models=[image_model(), video]))

    assert ModelSpec.objects.get(name="test-video").price_unit == "second"
    assert ModelSpec.objects.get(name="test-image").price_unit == "job"


BROKEN_MODELS = {
    "unknown provider": {"provider": "nowhere"},
    "bad kind": {"kind": "audio"},
    "unknown field": {"colour": "red"},
    "missing remote_name": {"remote_name": None},
    "negative price": {"price": "-1.00"},
    "negative number price": {"price": -1},
    "non-numeric price": {"price": "cheap"},
    "boolean price": {"price": True},
    "sub-cent price": {"price": "1.005"},
    "sizes as text": {"sizes": "512x512"},
    "sizes as numbers": {"sizes": [512]},
    "malformed size": {"sizes": ["big"]},
    "durations as text": {"durations": ["4"]},
    "boolean max_n": {"max_n": True},
    "text max_prompt_chars": {"max_prompt_chars": "2000"},
    "unknown price_unit": {"price_unit": "minute"},
    "per-second image": {"price_unit": "second"},
}


@pytest.mark.parametrize("defect", BROKEN_MODELS.values(), ids=BROKEN_MODELS.keys())
def test_loadcatalog_rejects_broken_model(write_catalog, defect):
    call_command("loadcatalog", stdout=StringIO())
    before = catalog_snapshot()
    broken = image_model(name="broken-model", **defect)
    broken = {key: value for key, value in broken.items() if value is not None}
    changed = image_model(name="local-image", remote_name="changed", price="9.00")
    path = write_catalog(models=[changed, image_model(name="fine-model"), broken])

    with pytest.raises(CommandError, match="broken-model"):
        load_catalog_file(path)

    assert catalog_snapshot() == before


BROKEN_PROVIDERS = {
    "bad kind": {"kind": "telepathy"},
    "unknown field": {"region": "eu"},
    "key in file": {"api_key": "sk-in-the-file"},
    "text enabled": {"enabled": "false"},
    "numeric base_url": {"base_url": 8080},
}


@pytest.mark.parametrize(
    "defect", BROKEN_PROVIDERS.values(), ids=BROKEN_PROVIDERS.keys()
)
def test_loadcatalog_rejects_broken_provider(write_catalog, defect):
    broken = {**VENDOR_PROVIDER, "name": "broken-provider", **defect}
    path = write_catalog(providers=[LOCAL_PROVIDER, broken], models=[image_model()])

    with pytest.raises(CommandError, match="broken-provider"):
        load_catalog_file(path)

    assert not Provider.objects.exists()
    assert not ModelSpec.objects.exists()


def test_loadcatalog_rejects_missing_file(tmp_path):
    with pytest.raises(CommandError, match=r"missing\.json"):
        load_catalog_file(tmp_path / "missing.json")


def test_loadcatalog_rejects_unknown_section(tmp_path):
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps({"providers": [], "prices": []}), encoding="utf-8")

    with pytest.raises(CommandError):
        load_catalog_file(path)


def test_vendor_without_key_loads_disabled(write_catalog, no_vendor_key):
    load_catalog_file(write_catalog(providers=[VENDOR_PROVIDER]))

    assert Provider.objects.get(name="test-vendor").enabled is False


def test_vendor_with_key_variable_loads_enabled(write_catalog, monkeypatch):
    monkeypatch.setenv(KEY_VARIABLE, "sk-from-env")

    load_catalog_file(write_catalog(providers=[VENDOR_PROVIDER]))

    vendor = Provider.objects.get(name="test-vendor")
    assert vendor.enabled is True
    assert vendor.api_key == ""


def test_vendor_disabled_in_file_stays_disabled(write_catalog, monkeypatch):
    monkeypatch.setenv(KEY_VARIABLE, "sk-from-env")
    entry = {**VENDOR_PROVIDER, "enabled": False}

    load_catalog_file(write_catalog(providers=[entry]))

    assert Provider.objects.get(name="test-vendor").enabled is False


def test_loadcatalog_keeps_saved_key(write_catalog, no_vendor_key):
    path = write_catalog(providers=[VENDOR_PROVIDER])
    load_catalog_file(path)
    Provider.objects.filter(name="test-vendor").update(api_key="sk-saved-in-admin")

    load_catalog_file(path)

    vendor = Provider.objects.get(name="test-vendor")
    assert vendor.api_key == "sk-saved-in-admin"
    assert vendor.enabled is True


def test_resolve_api_key_prefers_variable(monkeypatch):
    provider = Provider(
        name="test-vendor", api_key_env=KEY_VARIABLE, api_key="sk-saved-in-admin"
    )

    monkeypatch.setenv(KEY_VARIABLE, "sk-from-env")
    assert provider.resolve_api_key() == "sk-from-env"

    monkeypatch.delenv(KEY_VARIABLE)
    assert provider.resolve_api_key() == "sk-saved-in-admin"


@pytest.mark.django_db
def test_loadcatalog_rejects_duplicate_names(tmp_path):
    path = tmp_path / "catalog.json"
    entry = {"name": "dup", "kind": "local", "base_url": "", "api_key_env": ""}
    path.write_text(json.dumps({"providers": [entry, entry], "models": []}))

    with pytest.raises(CommandError, match="duplicate names dup"):
        call_command("loadcatalog", str(path))

    assert not Provider.objects.filter(name="dup").exists()
