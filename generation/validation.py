"""Check a submission against the model's limits and fill in defaults."""

import re
import secrets
import uuid
from typing import Any

from django.utils.translation import gettext

from assets.models import Asset
from providers.models import ModelSpec

SIZE_PATTERN = re.compile(r"^(\d{1,5})x(\d{1,5})$")
MAX_SEED = 2**31 - 1
# Optional params, each accepted only when the model lists it in `supports`.
OPTIONAL_PARAMS = {"negative_prompt", "steps", "guidance", "reference_asset"}
KNOWN_PARAMS = OPTIONAL_PARAMS | {"size", "seed", "n", "duration"}


class InvalidSubmission(Exception):
    """Field errors keyed "model", "prompt", "params" or "params.<name>"."""

    def __init__(self, errors: dict[str, list[tuple[str, str]]]) -> None:
        super().__init__(errors)
        self.errors = errors


class _Errors:
    def __init__(self) -> None:
        self.items: dict[str, list[tuple[str, str]]] = {}

    def add(self, field: str, message: str, code: str) -> None:
        self.items.setdefault(field, []).append((message, code))

    def raise_any(self) -> None:
        if self.items:
            raise InvalidSubmission(self.items)


def clean_submission(user, model_name: Any, prompt: Any, params: Any):
    """Return (model, prompt, params) ready to queue, or raise InvalidSubmission."""
    errors = _Errors()
    model = _clean_model(model_name, errors)
    prompt = _clean_prompt(prompt, model, errors)
    if not isinstance(params, dict):
        errors.add("params", gettext("Params must be a JSON object."), "invalid")
    errors.raise_any()

    cleaned = _clean_params(user, model, params, errors)
    errors.raise_any()
    return model, prompt, cleaned


def _clean_model(name: Any, errors: _Errors) -> ModelSpec | None:
    if not name or not isinstance(name, str):
        errors.add("model", gettext("Choose a model."), "required")
        return None

    model = ModelSpec.objects.available().select_related("provider").filter(name=name)
    found = model.first()
    if found is None:
        message = gettext("Unknown or disabled model: %(name)s.") % {"name": name}
        errors.add("model", message, "unknown_model")
    return found


def _clean_prompt(prompt: Any, model: ModelSpec | None, errors: _Errors) -> str:
    if not isinstance(prompt, str) or not prompt.strip():
        errors.add("prompt", gettext("Write a prompt."), "blank")
        return ""

    prompt = prompt.strip()
    limit = model.max_prompt_chars if model else None
    if limit and len(prompt) > limit:
        message = gettext(
            "The prompt has %(length)s characters; this model takes %(limit)s."
        ) % {"length": len(prompt), "limit": limit}
        errors.add("prompt", message, "max_length")
    return prompt


def _clean_params(user, model: ModelSpec, params: dict, errors: _Errors) -> dict:
    for name in sorted(set(params) - KNOWN_PARAMS):
        message = gettext("Unknown parameter: %(name)s.") % {"name": name}
        errors.add(f"params.{name}", message, "unsupported")
    for name in sorted((set(params) & OPTIONAL_PARAMS) - set(model.supports)):
        message = gettext("%(model)s does not take %(name)s.") % {
            "model": model.name,
            "name": name,
        }
        errors.add(f"params.{name}", message, "unsupported")

    cleaned = {
        "size": _clean_size(params.get("size"), model, errors),
        "seed": _clean_seed(params.get("seed"), errors),
        "n": _clean_count(params.get("n"), model, errors),
    }
    if model.kind == ModelSpec.Kind.VIDEO:
        cleaned["duration"] = _clean_duration(params.get("duration"), model, errors)
    cleaned.update(_clean_optional(user, model, params, errors))
    return cleaned


def _clean_size(size: Any, model: ModelSpec, errors: _Errors) -> str:
    if size is None:
        return model.default_size

    if not isinstance(size, str) or not SIZE_PATTERN.match(size):
        message = gettext("Size %(size)s is not of the form WxH.") % {
            "size": repr(size)
        }
        errors.add("params.size", message, "invalid")
        return ""
    if model.sizes and size not in model.sizes:
        allowed = ", ".join(model.sizes)
        message = gettext(
            "%(model)s does not support size %(size)s; choose one of %(allowed)s."
        ) % {"model": model.name, "size": size, "allowed": allowed}
        errors.add("params.size", message, "unsupported")
    return size


def _clean_seed(seed: Any, errors: _Errors) -> int:
    if seed is None or seed == "":
        return secrets.randbelow(MAX_SEED + 1)

    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        message = gettext("The seed must be an integer from 0 to %(max)s.") % {
            "max": MAX_SEED
        }
        errors.add("params.seed", message, "invalid")
        return 0
    return seed


def _clean_count(n: Any, model: ModelSpec, errors: _Errors) -> int:
    if n is None:
        return 1

    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= model.max_n:
        message = gettext("n must be an integer from 1 to %(max)s for %(model)s.") % {
            "max": model.max_n,
            "model": model.name,
        }
        errors.add("params.n", message, "invalid")
        return 1
    return n


def _clean_duration(duration: Any, model: ModelSpec, errors: _Errors) -> int:
    if duration is None:
        return model.durations[0] if model.durations else 4

    if duration not in model.durations or isinstance(duration, bool):
        allowed = ", ".join(str(d) for d in sorted(model.durations))
        message = gettext("%(model)s makes videos of %(allowed)s seconds.") % {
            "model": model.name,
            "allowed": allowed,
        }
        errors.add("params.duration", message, "unsupported")
    return duration


def _clean_optional(user, model: ModelSpec, params: dict, errors: _Errors) -> dict:
    cleaned: dict[str, Any] = {}
    supported = set(params) & OPTIONAL_PARAMS & set(model.supports)
    if "negative_prompt" in supported:
        cleaned["negative_prompt"] = _clean_negative(params, model, errors)
    if "steps" in supported:
        cleaned["steps"] = _clean_number(params, "steps", int, 1, 100, errors)
    if "guidance" in supported:
        cleaned["guidance"] = _clean_number(params, "guidance", float, 1.5, 20, errors)
    if "reference_asset" in supported:
        cleaned["reference_asset"] = _clean_reference(user, params, errors)
    return cleaned


def _clean_negative(params: dict, model: ModelSpec, errors: _Errors) -> str:
    value = params["negative_prompt"]
    if not isinstance(value, str) or len(value) > model.max_prompt_chars:
        limit = model.max_prompt_chars
        message = gettext(
            "The negative prompt must be text of at most %(limit)s characters."
        ) % {"limit": limit}
        errors.add("params.negative_prompt", message, "invalid")
        return ""
    # PostgreSQL cannot store U+0000 in jsonb, so the insert would fail.
    if "\x00" in value:
        message = gettext("The negative prompt must not contain null characters.")
        errors.add("params.negative_prompt", message, "null_characters_not_allowed")
        return ""
    return value


def _clean_number(params, name, kind, low, high, errors: _Errors):
    value = params[name]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        message = gettext("%(name)s must be a number.") % {"name": name}
        errors.add(f"params.{name}", message, "invalid")
        return None
    if kind is int and not isinstance(value, int):
        message = gettext("%(name)s must be a whole number.") % {"name": name}
        errors.add(f"params.{name}", message, "invalid")
        return None
    if not low <= value <= high:
        message = gettext("%(name)s must be from %(low)s to %(high)s.") % {
            "name": name,
            "low": low,
            "high": high,
        }
        errors.add(f"params.{name}", message, "invalid")
    return kind(value)


def _clean_reference(user, params: dict, errors: _Errors) -> str:
    value = params["reference_asset"]
    try:
        asset_id = uuid.UUID(str(value))
    except ValueError:
        errors.add("params.reference_asset", gettext("Not an asset id."), "invalid")
        return ""

    exists = Asset.objects.filter(owner=user, pk=asset_id, kind="image").exists()
    if not exists:
        message = gettext("No image with this id in your library.")
        errors.add("params.reference_asset", message, "not_found")
    return str(asset_id)
