"""OpenAI Images API: text-to-image generations and image edits.

One synchronous POST returns every image, as base64 (GPT image models) or as
links that expire after an hour (DALL-E models), which are downloaded at once.
"""

import base64
import binascii
import logging
from typing import Any, ClassVar

import requests
from django.conf import settings
from django.utils.translation import gettext

from providers.adapters.base import (
    GenerationRequest,
    JobContext,
    ReferenceImage,
    ResultFile,
)
from providers.download import download_for_job
from providers.errors import ProviderError
from providers.http import VendorClient

logger = logging.getLogger(__name__)

GENERATIONS_PATH = "/v1/images/generations"
EDITS_PATH = "/v1/images/edits"
REFERENCE_EXTENSIONS = {
    "image/png": ".png",
    "image/jpeg": ".jpg",
    "image/webp": ".webp",
    "image/gif": ".gif",
}
# File signatures of the output formats the Images API offers (png, jpeg, webp).
IMAGE_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"RIFF", "image/webp"),
)


class OpenAIImagesAdapter:
    kind: ClassVar[str] = "openai_images"

    def generate(
        self, request: GenerationRequest, context: JobContext
    ) -> list[ResultFile]:
        """Generate (or, with a reference image, edit) and return every image."""
        client = VendorClient(
            request,
            context,
            connect_timeout=settings.VENDOR_CONNECT_TIMEOUT,
            read_timeout=settings.OPENAI_IMAGES_TIMEOUT,
        )
        context.progress(5)
        response = _send(client, request)
        context.progress(90)

        items = _result_items(read_json(response, gettext("image result")))
        files = [_result_file(item, request, context) for item in items]
        context.progress(100)
        logger.info(
            "images received job=%s provider=%s count=%d",
            request.job_id,
            request.provider_name,
            len(files),
        )
        return files


def _send(client: VendorClient, request: GenerationRequest) -> requests.Response:
    fields = {
        "model": request.remote_model,
        "prompt": request.prompt,
        "n": _count(request.params),
        "size": request.params.get("size") or "auto",
    }
    # response_format is left out: GPT image models reject it and always return
    # base64, DALL-E models then return links, and both shapes are handled.
    if request.reference is None:
        return client.send("POST", GENERATIONS_PATH, json=fields)

    data = {name: str(value) for name, value in fields.items()}
    files = {"image": reference_upload(request.reference, "reference")}
    return client.send("POST", EDITS_PATH, data=data, files=files)


def _count(params: dict[str, Any]) -> int:
    count = params.get("n", 1)
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ProviderError(
            "invalid_request",
            gettext("Invalid n %(count)s: expected a positive integer.")
            % {"count": repr(count)},
        )
    return count


def reference_upload(reference: ReferenceImage, stem: str) -> tuple[str, bytes, str]:
    """Build a requests multipart file (name, bytes, type) for a reference image."""
    extension = REFERENCE_EXTENSIONS.get(reference.mime_type)
    if extension is None:
        supported = ", ".join(REFERENCE_EXTENSIONS)
        raise ProviderError(
            "invalid_request",
            gettext(
                "The reference image is %(type)s; this provider takes %(supported)s."
            )
            % {"type": reference.mime_type, "supported": supported},
        )
    return f"{stem}{extension}", reference.content, reference.mime_type


def read_json(response: requests.Response, what: str) -> dict[str, Any]:
    """Decode a 2xx JSON object body, or raise a non-retryable provider_error.

    Not retryable because the vendor returned a 2xx status, so it may have done
    (and billed) the work.
    """
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        content_type = response.headers.get("Content-Type") or gettext(
            "no content type"
        )
        raise ProviderError(
            "provider_error",
            gettext("The provider returned an unreadable %(what)s (%(type)s).")
            % {"what": what, "type": content_type},
        )
    return body


def _result_items(body: dict[str, Any]) -> list[dict[str, Any]]:
    items = body.get("data")
    if not isinstance(items, list) or not items:
        raise ProviderError(
            "result_invalid", gettext("The provider returned no images.")
        )
    if not all(isinstance(item, dict) for item in items):
        raise ProviderError(
            "result_invalid", gettext("The provider returned a bad image list.")
        )
    return items


def _result_file(
    item: dict[str, Any], request: GenerationRequest, context: JobContext
) -> ResultFile:
    if item.get("b64_json"):
        content = _decode_base64(item["b64_json"])
        return ResultFile(content=content, mime_type=image_type(content))

    url = item.get("url")
    if not isinstance(url, str) or not url:
        raise ProviderError(
            "result_invalid",
            gettext("The provider returned an image without data or link."),
        )
    return download_for_job(url, request, context)


def _decode_base64(payload: Any) -> bytes:
    limit = settings.MAX_RESULT_BYTES
    if len(str(payload)) // 4 * 3 > limit:
        raise ProviderError(
            "result_invalid",
            gettext("The image is larger than the %(limit)s-byte limit.")
            % {"limit": limit},
        )
    try:
        return base64.b64decode(str(payload), validate=True)
    except (binascii.Error, ValueError) as error:
        raise ProviderError(
            "result_invalid",
            gettext("The provider returned an image that is not base64."),
        ) from error


def image_type(content: bytes) -> str:
    """Return the MIME type named by the file signature, else PNG.

    Ingest decodes the bytes and checks the real type.
    """
    for signature, mime_type in IMAGE_SIGNATURES:
        if content.startswith(signature):
            return mime_type
    return "image/png"
