"""Load providers and models from a catalog file, upserting by name."""

import json
import os
import re
from pathlib import Path
from typing import Any

from django.db import transaction

from billing.money import parse_amount
from providers.models import ModelSpec, Provider

DEFAULT_CATALOG = Path(__file__).resolve().parent / "default_catalog.json"

PROVIDER_FIELDS = {
    "name": str,
    "kind": str,
    "base_url": str,
    "api_key_env": str,
    "enabled": bool,
}
MODEL_REQUIRED = {"name", "provider", "kind", "remote_name", "price"}
MODEL_OPTIONAL = {
    "label": str,
    "description": str,
    "sizes": list,
    "max_prompt_chars": int,
    "durations": list,
    "max_n": int,
    "deadline_seconds": int,
    "supports": list,
    "enabled": bool,
    "sort_order": int,
    "price_unit": str,
}
SIZE_PATTERN = re.compile(r"[0-9]{1,5}x[0-9]{1,5}")


class CatalogError(ValueError):
    pass


def load_catalog(path: Path) -> tuple[int, int]:
    """Upsert every provider and model in the file; return their counts.

    Aborts without changing anything when an entry is invalid.
    """
    data = _read(path)
    for section in ("providers", "models"):
        _check_unique_names(data.get(section, []), section)
    with transaction.atomic():
        for entry in data.get("providers", []):
            upsert_provider(entry)
        for entry in data.get("models", []):
            upsert_model(entry)
    return len(data.get("providers", [])), len(data.get("models", []))


def _read(path: Path) -> dict:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise CatalogError(f"Cannot read catalog {path}: {error}") from error
    if not isinstance(data, dict) or set(data) - {"providers", "models"}:
        raise CatalogError("A catalog is an object with 'providers' and 'models'.")
    return data


def _check_unique_names(entries: Any, section: str) -> None:
    if not isinstance(entries, list):
        raise CatalogError(f"'{section}' must be a list.")
    names = [entry.get("name") for entry in entries if isinstance(entry, dict)]
    duplicates = sorted({name for name in names if names.count(name) > 1}, key=str)
    if duplicates:
        listed = ", ".join(str(name) for name in duplicates)
        raise CatalogError(f"{section}: duplicate names {listed}.")


def upsert_provider(entry: Any) -> Provider:
    name = _entry_name(entry, "provider")
    label = f"provider {name}"
    _check_keys(entry, set(PROVIDER_FIELDS), {"name", "kind"}, label)
    for field, kind in PROVIDER_FIELDS.items():
        if field in entry and not isinstance(entry[field], kind):
            raise CatalogError(f"{label}: {field} must be {kind.__name__}.")
    if entry["kind"] not in Provider.Kind.values:
        raise CatalogError(f"provider {name}: unknown kind {entry['kind']!r}.")

    provider = Provider.objects.filter(name=name).first() or Provider(name=name)
    provider.kind = entry["kind"]
    provider.base_url = entry.get("base_url", "")
    provider.api_key_env = entry.get("api_key_env", "")
    # A vendor stays disabled until a key is available, so nothing calls it
    # by default. The key saved in admin is never overwritten here.
    has_key = bool(os.environ.get(provider.api_key_env) or provider.api_key)
    requested = bool(entry.get("enabled", True))
    provider.enabled = requested and (provider.kind == Provider.Kind.LOCAL or has_key)
    provider.save()
    return provider


def upsert_model(entry: Any) -> ModelSpec:
    name = _entry_name(entry, "model")
    allowed = MODEL_REQUIRED | set(MODEL_OPTIONAL)
    _check_keys(entry, allowed, MODEL_REQUIRED, f"model {name}")
    provider = Provider.objects.filter(name=entry["provider"]).first()
    if provider is None:
        raise CatalogError(f"model {name}: unknown provider {entry['provider']!r}.")
    if entry["kind"] not in ModelSpec.Kind.values:
        raise CatalogError(f"model {name}: kind must be 'image' or 'video'.")

    values = {"provider": provider, "kind": entry["kind"]}
    values["remote_name"] = str(entry["remote_name"])
    values["price"] = _price(entry["price"], name)
    values.update(_optional_fields(entry, name))
    _check_price_unit(values, entry["kind"], name)
    model, _ = ModelSpec.objects.update_or_create(name=name, defaults=values)
    return model


def _entry_name(entry: Any, what: str) -> str:
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
        raise CatalogError(f"Every {what} entry needs a 'name': {entry!r}")
    return entry["name"]


def _check_keys(entry: dict, allowed: set, required: set, label: str) -> None:
    if missing := required - set(entry):
        raise CatalogError(f"{label}: missing {', '.join(sorted(missing))}.")
    if unknown := set(entry) - allowed:
        raise CatalogError(f"{label}: unknown fields {', '.join(sorted(unknown))}.")


def _price(value: Any, name: str) -> int:
    try:
        price = parse_amount(value)
    except ValueError as error:
        raise CatalogError(f"model {name}: invalid price: {error}.") from None
    if price < 0:
        raise CatalogError(f"model {name}: price must not be negative.")
    return price


def _optional_fields(entry: dict, name: str) -> dict:
    values = {}
    for field, kind in MODEL_OPTIONAL.items():
        if field not in entry:
            continue
        value = entry[field]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise CatalogError(f"model {name}: {field} must be {kind.__name__}.")
        values[field] = value
    _check_items(values, name)
    return values


def _check_price_unit(values: dict, kind: str, name: str) -> None:
    unit = values.get("price_unit", ModelSpec.PriceUnit.JOB)
    if unit not in ModelSpec.PriceUnit.values:
        raise CatalogError(f"model {name}: price_unit must be 'job' or 'second'.")
    if unit == ModelSpec.PriceUnit.SECOND and kind != ModelSpec.Kind.VIDEO:
        raise CatalogError(f"model {name}: price_unit 'second' needs a video model.")


def _check_items(values: dict, name: str) -> None:
    # Submissions compare params with these lists, so an item of another type
    # would make every request for the model invalid.
    for size in values.get("sizes", []):
        if not isinstance(size, str) or not SIZE_PATTERN.fullmatch(size):
            raise CatalogError(f"model {name}: size {size!r} is not of the form WxH.")
    for seconds in values.get("durations", []):
        if isinstance(seconds, bool) or not isinstance(seconds, int) or seconds < 1:
            raise CatalogError(
                f"model {name}: duration {seconds!r} is not a positive whole number "
                "of seconds."
            )
    for param in values.get("supports", []):
        if not isinstance(param, str):
            raise CatalogError(f"model {name}: supports item {param!r} is not text.")
