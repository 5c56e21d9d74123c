"""Check a provider account cheaply, by listing models, without generating."""

import logging
from dataclasses import dataclass

import requests
from django.conf import settings

from providers.models import Provider

logger = logging.getLogger(__name__)

# Every vendor kind here lists models at this path with a bearer key.
MODELS_PATH = "/v1/models"


@dataclass(frozen=True)
class ConnectionResult:
    ok: bool
    message: str


def check_connection(provider: Provider) -> ConnectionResult:
    if provider.kind == Provider.Kind.LOCAL:
        return ConnectionResult(True, "The offline renderer needs no connection.")
    if not provider.base_url:
        return ConnectionResult(False, "No base URL is set.")

    key = provider.resolve_api_key()
    if not key:
        return ConnectionResult(
            False, "No API key is set in admin or in the environment."
        )
    return _list_models(provider, key)


def _list_models(provider: Provider, key: str) -> ConnectionResult:
    url = provider.base_url.rstrip("/") + MODELS_PATH
    session = requests.Session()
    session.trust_env = False
    timeout = (settings.VENDOR_CONNECT_TIMEOUT, settings.VENDOR_CONNECT_TIMEOUT)
    try:
        response = session.get(
            url, headers={"Authorization": f"Bearer {key}"}, timeout=timeout
        )
    except requests.RequestException as error:
        logger.warning(
            "provider check failed provider=%s error=%s",
            provider.name,
            type(error).__name__,
        )
        return ConnectionResult(
            False, f"Could not reach {url}: {type(error).__name__}."
        )

    logger.info(
        "provider check provider=%s status=%s", provider.name, response.status_code
    )
    if response.status_code in (401, 403):
        return ConnectionResult(
            False, f"The key was rejected (HTTP {response.status_code})."
        )
    if not response.ok:
        return ConnectionResult(
            False, f"The provider answered HTTP {response.status_code}."
        )
    return ConnectionResult(True, f"Connected: {_model_count(response)} models listed.")


def _model_count(response: requests.Response) -> int | str:
    try:
        return len(response.json().get("data", []))
    except (ValueError, AttributeError):
        return "an unknown number of"
