"""HTTP to vendors: timeouts, redacted call records and error classification.

Every adapter sends its requests through VendorClient, so each vendor call is
summarised for staff the same way and every failure maps to a stable code.
"""

import json as jsonlib
import logging
import math
import re
import time
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import requests
from django.utils.translation import gettext
from urllib3.util import parse_url

from providers.adapters.base import GenerationRequest, JobContext, VendorCall
from providers.errors import ProviderError

logger = logging.getLogger(__name__)

USER_AGENT = "LightSource"
EXCERPT_CHARS = 1000
MESSAGE_CHARS = 300
# An error body of a streamed response is read only this far before closing.
ERROR_BODY_BYTES = 64 * 1024
# Methods that cannot start paid work, so a timeout after sending them is retried.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
INVALID_URL_ERRORS = (
    requests.exceptions.InvalidURL,
    requests.exceptions.InvalidSchema,
    requests.exceptions.MissingSchema,
    requests.exceptions.URLRequired,
)
POLICY_WORDS = (
    "moderation",
    "safety",
    "policy",
    "nsfw",
    "inappropriate",
    "违规",
    "敏感",
)

_SECRET_QUERY = re.compile(r"(?i)([?&][^=&#]*(?:key|token|sig|signature)=)[^&#\s]*")
_DATA_URL = re.compile(r"(data:[\w.+-]+/[\w.+-]+;base64,)([A-Za-z0-9+/_-]{25,}={0,2})")
_BASE64_RUN = re.compile(r"[A-Za-z0-9+/_-]{121,}={0,2}")
_GO_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


class VendorClient:
    """A requests session bound to one provider account and one running job."""

    def __init__(
        self,
        request: GenerationRequest,
        context: JobContext,
        *,
        connect_timeout: float,
        read_timeout: float,
    ) -> None:
        self.request = request
        self.context = context
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.base_url = request.base_url.rstrip("/")
        self.secrets = [request.api_key] if request.api_key else []

        self.session = requests.Session()
        # Proxies and .netrc from the worker's environment must not see the key.
        self.session.trust_env = False
        self.session.headers["User-Agent"] = USER_AGENT
        if request.api_key:
            self.session.headers["Authorization"] = f"Bearer {request.api_key}"

    def send(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        data: dict | None = None,
        files: dict | None = None,
        headers: dict | None = None,
        stream: bool = False,
        read_timeout: float | None = None,
        redirect: bool = False,
    ) -> requests.Response:
        """Send `method` to base_url + `path` with the bearer key and record the call.

        Returns a response with a 2xx status. Raises ProviderError for connection
        failures, timeouts and non-2xx statuses, classified by classify_status.
        With stream=True the body is left unread and the caller must close it.
        Redirects are never followed. With redirect=True a 3xx reply is returned
        for the caller to follow through the guarded downloader; otherwise it fails.
        """
        method = method.upper()
        url = self._url(path)
        timeout = (self.connect_timeout, read_timeout or self.read_timeout)
        call = VendorCall(
            method=method,
            url=redact_url(url, self.secrets),
            status=None,
            duration_ms=0,
            request_excerpt=self._request_excerpt(json, data, files),
        )

        started = time.monotonic()
        try:
            response = self.session.request(
                method,
                url,
                json=json,
                data=data,
                files=files,
                headers=headers,
                stream=stream,
                timeout=timeout,
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            error = transport_error(method, exc)
            self._finish(call, started, error=f"{type(exc).__name__}: {exc}")
            self._log_failure(call, error)
            raise error from exc

        call.status = response.status_code
        if 200 <= response.status_code < 300 or (redirect and response.is_redirect):
            excerpt = self._response_excerpt(response, stream)
            self._finish(call, started, response_excerpt=excerpt)
            return response
        raise self._status_error(response, call, started, stream)

    def _url(self, path: str) -> str:
        if not path.lower().startswith(("http://", "https://")):
            if path and not path.startswith("/"):
                path = "/" + path
            return self.base_url + path

        # Vendors return absolute links, for example to video content. The bearer
        # key is sent only to the configured host.
        if _hostname(path) != _hostname(self.base_url):
            raise ProviderError(
                "invalid_request",
                "The provider returned a link to another host, which was not "
                "followed. Ask staff to check the provider's base URL.",
            )
        return path

    def _status_error(
        self,
        response: requests.Response,
        call: VendorCall,
        started: float,
        stream: bool,
    ) -> ProviderError:
        body = _read_error_body(response) if stream else _decode(response.content)
        # Redact before classifying, which shortens the vendor's message: a key
        # across that cut would otherwise leave its first characters behind.
        body = redact(body, self.secrets)
        error = classify_status(response.status_code, body, response.headers)
        self._finish(
            call,
            started,
            response_excerpt=self._body_excerpt(body),
            error=str(error),
        )
        self._log_failure(call, error)
        return error

    def _response_excerpt(self, response: requests.Response, stream: bool) -> str:
        if stream:
            content_type = response.headers.get("Content-Type") or "not set"
            return f"(streamed body, Content-Type: {content_type})"
        return self._body_excerpt(_decode(response.content[: EXCERPT_CHARS * 4]))

    def _body_excerpt(self, body: str) -> str:
        # Redact before cutting, so a secret across the cut cannot leave a prefix.
        return redact(body[: EXCERPT_CHARS * 4], self.secrets)[:EXCERPT_CHARS]

    def _request_excerpt(self, json: Any, data: dict | None, files: dict | None) -> str:
        if json is not None:
            text = jsonlib.dumps(json, ensure_ascii=False, default=str)
        elif data is not None or files is not None:
            text = f"multipart fields: {', '.join(map(str, data or {}))}"
            text += f"; files: {', '.join(map(str, files or {}))}"
        else:
            return ""
        return redact(text, self.secrets)[:EXCERPT_CHARS]

    def _finish(
        self,
        call: VendorCall,
        started: float,
        *,
        response_excerpt: str = "",
        error: str = "",
    ) -> None:
        call.duration_ms = round((time.monotonic() - started) * 1000)
        call.response_excerpt = response_excerpt
        call.error = redact_url(error, self.secrets)[:EXCERPT_CHARS]
        self.context.record_call(call)

    def _log_failure(self, call: VendorCall, error: ProviderError) -> None:
        logger.warning(
            "vendor call failed job=%s provider=%s method=%s url=%s status=%s "
            "code=%s retryable=%s",
            self.request.job_id,
            self.request.provider_name,
            call.method,
            call.url,
            call.status,
            error.code,
            error.retryable,
        )


def transport_error(method: str, exc: requests.RequestException) -> ProviderError:
    """Classify a failure to connect or to read the response.

    A timeout after the request was sent is retried only for safe methods,
    because the vendor may have accepted (and billed) a POST before timing out.
    """
    if isinstance(exc, requests.ConnectTimeout):
        return ProviderError(
            "provider_timeout",
            gettext("The provider did not accept the connection in time."),
            retryable=True,
        )
    # requests raises ConnectionError for a read timeout inside the body.
    if isinstance(exc, requests.ReadTimeout) or "Read timed out" in str(exc):
        return _read_timeout_error(method)
    if isinstance(exc, requests.ConnectionError):
        return ProviderError(
            "provider_error",
            gettext("Could not reach the provider."),
            retryable=True,
        )
    if isinstance(exc, INVALID_URL_ERRORS):
        return ProviderError(
            "provider_error",
            gettext("The provider's base URL is invalid. Ask staff to check it."),
        )
    # A broken body (bad chunking or encoding) arrives after the request was sent.
    return ProviderError(
        "provider_error",
        gettext("The provider's response could not be read (%(error)s).")
        % {"error": type(exc).__name__},
        retryable=method.upper() in SAFE_METHODS,
    )


def _read_timeout_error(method: str) -> ProviderError:
    if method.upper() in SAFE_METHODS:
        return ProviderError(
            "provider_timeout",
            gettext("The provider did not answer in time."),
            retryable=True,
        )
    return ProviderError(
        "provider_timeout",
        gettext(
            "The provider did not answer in time. It may have accepted the "
            "request, so it was not sent again to avoid a second charge."
        ),
    )


def classify_status(status: int, body: str, headers: dict) -> ProviderError:
    """Map a vendor's HTTP error to a ProviderError with a user-facing message.

    401/403 -> provider_auth; 429 -> provider_rate_limited with Retry-After;
    408, 409, 5xx -> provider_error, retryable; other 4xx -> provider_rejected
    or invalid_request. The vendor's own message (OpenAI `error.message`,
    ModelScope `errors.message`, `detail`) is kept when present.
    """
    message = vendor_message(body).rstrip(". ")
    detail = f" (HTTP {status}): {message}" if message else f" (HTTP {status})"

    if status in (401, 403):
        return ProviderError(
            "provider_auth",
            gettext(
                "The provider rejected the API key%(detail)s. "
                "Ask staff to check the provider account."
            )
            % {"detail": detail},
        )
    if status == 429:
        return ProviderError(
            "provider_rate_limited",
            gettext("The provider is limiting requests%(detail)s.")
            % {"detail": detail},
            retryable=True,
            retry_after=_rate_limit_wait(headers),
        )
    if status in (408, 409) or status >= 500:
        return ProviderError(
            "provider_error",
            gettext("The provider failed%(detail)s.") % {"detail": detail},
            retryable=True,
            retry_after=retry_after_seconds(headers),
        )
    return _client_error(status, detail, _policy_text(body, message))


def _client_error(status: int, detail: str, policy_text: str) -> ProviderError:
    if status in (400, 404, 422) and _mentions_policy(policy_text):
        return ProviderError(
            "provider_rejected",
            gettext(
                "The provider refused this request under its content policy%(detail)s."
            )
            % {"detail": detail},
        )
    if 400 <= status < 500:
        return ProviderError(
            "invalid_request",
            gettext("The provider rejected the request%(detail)s.")
            % {"detail": detail},
        )
    return ProviderError(
        "provider_error",
        gettext("The provider returned an unexpected status%(detail)s.")
        % {"detail": detail},
    )


def vendor_message(body: str) -> str:
    """Return the vendor's own error message from a body, shortened, or ""."""
    try:
        parsed = jsonlib.loads(body)
    except ValueError:
        parsed = None
    if parsed is None:
        return _plain_text_message(body)
    return _shorten(_message_from_json(parsed))


def _message_from_json(parsed: Any) -> str:
    if isinstance(parsed, str):
        return parsed
    if isinstance(parsed, list):
        return _message_from_json(parsed[0]) if parsed else ""
    if not isinstance(parsed, dict):
        return ""

    for key in ("error", "errors", "detail"):
        value = parsed.get(key)
        if value:
            return _message_from_json(value)
    for key in ("message", "Message", "msg", "error_msg"):
        value = parsed.get(key)
        if isinstance(value, str) and value:
            return value
    return ""


def _plain_text_message(body: str) -> str:
    text = body.strip()
    # An HTML error page (a gateway's or a CDN's) carries no usable message.
    if not text or text.startswith("<") or "<html" in text[:500].lower():
        return ""
    return _shorten(text)


def _policy_text(body: str, message: str) -> str:
    """Return the text searched for content-policy words: message and error codes."""
    try:
        parsed = jsonlib.loads(body)
    except ValueError:
        return message
    error = parsed.get("error") if isinstance(parsed, dict) else None
    if isinstance(error, dict):
        codes = [str(error.get(key) or "") for key in ("code", "type")]
        return " ".join([message, *codes])
    return message


def _mentions_policy(text: str) -> bool:
    lowered = text.lower()
    return any(word in lowered for word in POLICY_WORDS)


def retry_after_seconds(headers: dict) -> float | None:
    """Parse Retry-After (seconds or an HTTP date); None when absent or invalid.

    Also reads `retry-after-ms` (milliseconds), which takes precedence.
    """
    lookup = {str(name).lower(): str(value) for name, value in headers.items()}

    if "retry-after-ms" in lookup:
        milliseconds = _finite_float(lookup["retry-after-ms"])
        if milliseconds is not None:
            return milliseconds / 1000
    if "retry-after" in lookup:
        seconds = _parse_retry_after(lookup["retry-after"])
        if seconds is not None:
            return seconds
    return None


def _rate_limit_wait(headers: dict) -> float | None:
    """Return Retry-After, else OpenAI's `x-ratelimit-reset-requests` ("6m0s")."""
    seconds = retry_after_seconds(headers)
    if seconds is not None:
        return seconds
    lookup = {str(name).lower(): str(value) for name, value in headers.items()}
    return _parse_duration(lookup.get("x-ratelimit-reset-requests", ""))


def _parse_retry_after(value: str) -> float | None:
    seconds = _finite_float(value)
    if seconds is not None:
        return seconds
    try:
        when = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _parse_duration(value: str) -> float | None:
    parts = _GO_DURATION.findall(value.strip())
    if not parts or "".join(number + unit for number, unit in parts) != value.strip():
        return None
    return sum(float(number) * _DURATION_UNITS[unit] for number, unit in parts)


def _finite_float(value: str) -> float | None:
    try:
        number = float(value.strip())
    except ValueError:
        return None
    if not math.isfinite(number) or number < 0:
        return None
    return number


def redact(text: str, secrets: list[str]) -> str:
    """Hide every secret and shorten base64 payloads in a text meant for staff."""
    for secret in secrets:
        if secret:
            text = text.replace(f"Bearer {secret}", "***").replace(secret, "***")
    text = _DATA_URL.sub(lambda m: m.group(1) + _shorten_base64(m.group(2)), text)
    return _BASE64_RUN.sub(lambda m: _shorten_base64(m.group(0)), text)


def redact_url(url: str, secrets: list[str]) -> str:
    """Hide secrets and signed-link query values (key, token, sig, signature)."""
    return _SECRET_QUERY.sub(r"\1***", redact(url, secrets))


def _shorten_base64(payload: str) -> str:
    return f"{payload[:24]}…[{len(payload)} chars]"


def _shorten(text: str) -> str:
    text = " ".join(text.split())
    if len(text) <= MESSAGE_CHARS:
        return text
    return text[: MESSAGE_CHARS - 1] + "…"


def _hostname(url: str) -> str:
    # urllib3 parses the URL that requests connects to; urllib.parse reads some
    # links (with a backslash before "@", for one) as naming another host.
    try:
        return (parse_url(url).host or "").lower()
    except ValueError:
        return ""


def _decode(content: bytes) -> str:
    return content.decode("utf-8", errors="replace")


def _read_error_body(response: requests.Response) -> str:
    chunks: list[bytes] = []
    total = 0
    try:
        for chunk in response.iter_content(chunk_size=8192):
            chunks.append(chunk)
            total += len(chunk)
            if total >= ERROR_BODY_BYTES:
                break
    except requests.RequestException:
        # The status already identifies the failure, so a broken body is ignored.
        pass
    finally:
        response.close()
    return _decode(b"".join(chunks)[:ERROR_BODY_BYTES])
