"""A fake OpenAI Images API, driven by a scenario name.

Scenarios:
- "b64": base64 PNGs, one per requested n.
- "url": links to PNGs served by this fake.
- "edit": requires a multipart /v1/images/edits with an `image` file.
- "auth": 401.
- "rate_limited": 429 with Retry-After: 3 on the first request, then as "b64".
- "server_error": 500.
- "policy": 400 with code content_policy_violation.
- "result_403": a link that returns 403, as an expired one does.
- "result_html": a link to an HTML page.
- "slow": as "b64", but the reply comes after SLOW_SECONDS.
"""

import base64
import time
from dataclasses import dataclass
from email import policy
from email.parser import BytesParser

from providers.tests.fakes.media import png_bytes
from providers.tests.fakes.server import FakeVendor, Recorded, Reply

API_KEY = "test-key"
RETRY_AFTER_SECONDS = 3
SLOW_SECONDS = 1.0
IMAGE_PATHS = ("/v1/images/generations", "/v1/images/edits")
FILES_PREFIX = "/files/"
# The 403 body of an expired signed blob link, as Azure storage sends it.
EXPIRED_LINK_BODY = (
    b'<?xml version="1.0" encoding="utf-8"?><Error><Code>AuthenticationFailed'
    b"</Code><Message>Server failed to authenticate the request. Signed expiry "
    b"time has to be after signed start time.</Message></Error>"
)
HTML_PAGE = b"<!DOCTYPE html><html><head><title>Sign in</title></head></html>"


@dataclass
class Part:
    """One field of a multipart/form-data body."""

    name: str
    filename: str | None
    content_type: str
    content: bytes


def openai_error(
    status: int, message: str, kind: str, code: str | None, headers=None
) -> Reply:
    """Build a reply with OpenAI's error body."""
    body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return Reply(status=status, body=body, headers=headers or {})


def parse_multipart(request: Recorded) -> dict[str, Part]:
    """Parse a multipart/form-data body into its parts by field name."""
    content_type = request.headers.get("Content-Type", "")
    if not content_type.startswith("multipart/form-data"):
        return {}
    head = f"Content-Type: {content_type}\r\n\r\n".encode()
    message = BytesParser(policy=policy.HTTP).parsebytes(head + request.body)
    parts = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        parts[name] = Part(
            name=name,
            filename=part.get_filename(),
            content_type=part.get_content_type(),
            content=part.get_payload(decode=True) or b"",
        )
    return parts


def form_fields(request: Recorded) -> dict:
    """Return the request's JSON object or its multipart text fields."""
    parts = parse_multipart(request)
    if not parts:
        return request.json()
    return {
        name: part.content.decode()
        for name, part in parts.items()
        if part.filename is None
    }


def unauthorized(request: Recorded) -> Reply | None:
    """Return OpenAI's 401 unless the request carries the bearer API_KEY."""
    if request.headers.get("Authorization") == f"Bearer {API_KEY}":
        return None
    return invalid_key()


def invalid_key() -> Reply:
    return openai_error(
        401,
        "Incorrect API key provided: tes*****. You can find your API key at "
        "https://platform.openai.com/account/api-keys.",
        "invalid_request_error",
        "invalid_api_key",
    )


class FakeOpenAIImages(FakeVendor):
    def __init__(self, scenario: str = "b64", host: str = "127.0.0.1") -> None:
        super().__init__(scenario, host)
        # The multipart parts of every edit request, in order.
        self.uploads: list[dict[str, Part]] = []

    def handle(self, request: Recorded) -> Reply:
        if request.method == "GET" and request.path.startswith(FILES_PREFIX):
            return self._file(request.path.removeprefix(FILES_PREFIX))
        if request.method != "POST" or request.path not in IMAGE_PATHS:
            return openai_error(404, "Invalid URL", "invalid_request_error", None)
        if failure := unauthorized(request) or self._failure():
            return failure
        if self.scenario == "slow":
            time.sleep(SLOW_SECONDS)
        if request.path == IMAGE_PATHS[1]:
            return self._edit(request)
        if self.scenario == "edit":
            return openai_error(
                400, "Expected an edit request.", "invalid_request_error", None
            )
        return self._images(form_fields(request))

    def _failure(self) -> Reply | None:
        if self.scenario == "auth":
            return invalid_key()
        if self.scenario == "rate_limited" and self.count("POST", "/v1/images") == 1:
            return openai_error(
                429,
                "Rate limit reached for gpt-image-1 on images per min (ipm): "
                "Limit 5, Used 5, Requested 1. Please try again in 3s.",
                "requests",
                "rate_limit_exceeded",
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            )
        if self.scenario == "server_error":
            return openai_error(
                500,
                "The server had an error while processing your request. "
                "Sorry about that!",
                "server_error",
                None,
            )
        if self.scenario == "policy":
            return openai_error(
                400,
                "Your request was rejected as a result of our safety system. Your "
                "prompt may contain text that is not allowed by our safety system.",
                "image_generation_user_error",
                "content_policy_violation",
            )
        return None

    def _edit(self, request: Recorded) -> Reply:
        parts = parse_multipart(request)
        with self.lock:
            self.uploads.append(parts)
        image = parts.get("image")
        if image is None or image.filename is None or not image.content:
            return openai_error(
                400,
                "Missing required parameter: 'image'.",
                "invalid_request_error",
                "missing_required_parameter",
            )
        return self._images(form_fields(request))

    def _images(self, fields: dict) -> Reply:
        count = int(fields.get("n", 1))
        if self.scenario in ("url", "result_403", "result_html"):
            data = [self._link(index) for index in range(count)]
        else:
            data = [
                {"b64_json": base64.b64encode(png_bytes(seed=index)).decode()}
                for index in range(count)
            ]
        body = {"created": int(time.time()), "data": data, "usage": _usage(count)}
        return Reply(body=body)

    def _link(self, index: int) -> dict:
        names = {"result_403": "expired", "result_html": "page"}
        name = names.get(self.scenario, "image")
        return {
            "url": f"{self.url}{FILES_PREFIX}{name}-{index}.png?se=2026&sig=abc",
            "revised_prompt": "A lighthouse at dusk, seen from the shore.",
        }

    def _file(self, name: str) -> Reply:
        name = name.split("?", 1)[0]
        if name.startswith("expired-"):
            return Reply(
                status=403,
                body=EXPIRED_LINK_BODY,
                headers={"Content-Type": "application/xml"},
            )
        if name.startswith("page-"):
            return Reply(body=HTML_PAGE, headers={"Content-Type": "text/html"})
        index = int(name.removeprefix("image-").removesuffix(".png"))
        return Reply(body=png_bytes(seed=index), headers={"Content-Type": "image/png"})


def _usage(count: int) -> dict:
    return {
        "total_tokens": 50 + 272 * count,
        "input_tokens": 50,
        "output_tokens": 272 * count,
        "input_tokens_details": {"text_tokens": 50, "image_tokens": 0},
    }
