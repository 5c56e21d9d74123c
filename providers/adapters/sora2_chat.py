"""Sora 2 through a sora2api-style gateway: one streamed chat completion per job.

The stream is the only channel. There is no task id and no status endpoint, so
progress comes from narration in `reasoning_content` and the result from a URL in
the final `content`. A job whose stream is lost cannot be resumed.
"""

import base64
import contextlib
import json
import logging
import queue
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

import requests
from django.conf import settings
from django.utils.translation import gettext
from urllib3.exceptions import ReadTimeoutError

from providers.adapters.base import (
    GenerationRequest,
    JobContext,
    ReferenceImage,
    ResultFile,
    VendorCall,
)
from providers.download import download_for_job
from providers.errors import ProviderError
from providers.http import VendorClient, redact, redact_url, vendor_message

logger = logging.getLogger(__name__)

CHAT_PATH = "/v1/chat/completions"
# How long the adapter waits for bytes before it checks for a cancel again. Video
# progress arrives only every 30 s, so waiting on the socket alone is too slow.
TICK_SECONDS = 0.5
READ_SIZE = 8192
# No event of this protocol comes near this size, so a longer line is not an event.
MAX_LINE_BYTES = 1024 * 1024
MAX_CONTENT_CHARS = 64 * 1024
MESSAGE_CHARS = 300
EXCERPT_CHARS = 1000
# Malformed lines are logged up to this many times per stream, then only counted.
MAX_LINE_WARNINGS = 5
PUMP_JOIN_SECONDS = 1.0
REFUSAL_MARKER = "❌"
SSE_FIELDS = ("event:", "id:", "retry:")

PROGRESS_LINE = re.compile(r"Progress\**\s*:\s*(\d{1,3})(?:\.\d+)?\s*%")
# Image narration carries no percentages, so a few milestones stand in for them.
MILESTONES = (
    ("Generation Process Begins", 1),
    ("Image Generation Begins", 1),
    ("Generation Completed", 95),
)
VIDEO_SOURCE = re.compile(r"""<video\b[^>]*?\bsrc\s*=\s*(["'])(.+?)\1""", re.I | re.S)
MARKDOWN_IMAGE = re.compile(r"!\[[^\]]*\]\(\s*<?([^)\s>]+)>?\s*\)")


@dataclass
class StreamState:
    """Events, text and progress read from the stream so far."""

    content: list[str] = field(default_factory=list)
    progress: int = 0
    finish_reason: str = ""
    done: bool = False
    events: int = 0
    skipped: int = 0

    @property
    def text(self) -> str:
        return "".join(self.content)

    @property
    def ended(self) -> bool:
        return self.done or bool(self.finish_reason)


class Sora2ChatAdapter:
    kind: ClassVar[str] = "sora2_chat"

    def generate(
        self, request: GenerationRequest, context: JobContext
    ) -> list[ResultFile]:
        """Stream one chat completion, then download every result URL it names.

        Raises ProviderError. Only failures before the stream starts are
        retryable, because from then on the gateway has accepted the paid work.
        """
        body = chat_body(request)
        client = VendorClient(
            request,
            context,
            connect_timeout=settings.VENDOR_CONNECT_TIMEOUT,
            read_timeout=settings.SORA_READ_TIMEOUT,
        )
        logger.info(
            "sora2 stream starting job=%s provider=%s model=%s reference=%s",
            request.job_id,
            request.provider_name,
            request.remote_model,
            request.reference is not None,
        )
        response = client.send(
            "POST",
            CHAT_PATH,
            json=body,
            stream=True,
            read_timeout=settings.SORA_READ_TIMEOUT,
        )
        reader = StreamReader(request, context, response)
        urls = reader.read()
        logger.info(
            "sora2 stream finished job=%s provider=%s events=%d results=%d",
            request.job_id,
            request.provider_name,
            reader.state.events,
            len(urls),
        )
        return [download_for_job(url, request, context) for url in urls]


def chat_body(request: GenerationRequest) -> dict[str, Any]:
    """Build the request body. The gateway reads only the last message."""
    message = {"role": "user", "content": message_content(request)}
    return {"model": request.remote_model, "messages": [message], "stream": True}


def message_content(request: GenerationRequest) -> str | list[dict[str, Any]]:
    if request.reference is None:
        return request.prompt

    # The gateway ignores http(s) image URLs, so the image travels inline.
    image = {"url": data_url(request.reference)}
    return [
        {"type": "text", "text": request.prompt},
        {"type": "image_url", "image_url": image},
    ]


def data_url(reference: ReferenceImage) -> str:
    limit = settings.MAX_REFERENCE_BYTES
    if len(reference.content) > limit:
        raise ProviderError(
            "invalid_request",
            gettext(
                "The reference image is %(size)s bytes, over the %(limit)s-byte "
                "limit of this provider. Choose a smaller image."
            )
            % {"size": len(reference.content), "limit": limit},
        )
    encoded = base64.b64encode(reference.content).decode("ascii")
    return f"data:{reference.mime_type};base64,{encoded}"


class StreamReader:
    """Read the event stream of one completion while watching for cancel and time.

    A helper thread only moves bytes from the socket into a queue, so this thread
    (the worker's, with its database connection) wakes every TICK_SECONDS to check
    for a cancel, the job's deadline and a silent gateway.
    """

    def __init__(
        self,
        request: GenerationRequest,
        context: JobContext,
        response: requests.Response,
    ) -> None:
        self.request = request
        self.context = context
        self.response = response
        self.state = StreamState()
        self.chunks: queue.Queue[bytes | BaseException] = queue.Queue()
        self.started = time.monotonic()
        self.last_bytes_at = self.started

    def read(self) -> list[str]:
        """Consume the stream, close it and return the result URLs.

        Raises ProviderError for an error event, a final text without a URL, a
        stream cut short, the job's deadline or a silent gateway.
        """
        pump = threading.Thread(
            target=pump_bytes,
            args=(self.response, self.chunks),
            name=f"sora2-stream-{self.request.job_id}",
            daemon=True,
        )
        pump.start()
        try:
            self._consume()
            urls = result_urls(self.state)
        except ProviderError as error:
            # Error events and refusals quote the gateway, which may echo the key.
            secrets = [self.request.api_key] if self.request.api_key else []
            error.message = redact(error.message, secrets)
            self._record(error)
            raise
        except BaseException as error:
            self._record(error)
            raise
        finally:
            self._close(pump)
        self._record(None)
        return urls

    def _consume(self) -> None:
        pending = b""
        while not self.state.ended:
            data = self._next_bytes()
            if data is None:
                continue
            if not data:
                break

            pending += data
            *lines, pending = pending.split(b"\n")
            for line in lines:
                self._handle_line(line)
                if self.state.ended:
                    return
            if len(pending) > MAX_LINE_BYTES:
                raise ProviderError(
                    "provider_error",
                    gettext(
                        "The provider sent a line over %(max)s bytes, "
                        "which is not a stream event."
                    )
                    % {"max": MAX_LINE_BYTES},
                )

        if pending.strip() and not self.state.ended:
            self._handle_line(pending)

    def _next_bytes(self) -> bytes | None:
        """Return the next bytes, b"" at the end, or None when a tick passed."""
        self._check_stop()
        self._check_time()
        try:
            item = self.chunks.get(timeout=TICK_SECONDS)
        except queue.Empty:
            return None

        if isinstance(item, BaseException):
            return self._end_by_error(item)
        self.last_bytes_at = time.monotonic()
        return item

    def _check_stop(self) -> None:
        if not self.context.should_stop():
            return

        logger.info(
            "sora2 stream stopping job=%s provider=%s",
            self.request.job_id,
            self.request.provider_name,
        )
        shutdown(self.response)
        # The worker's context raises here, because the job was canceled or the
        # worker is stopping. Any other context still must not read on.
        self.context.progress(self.state.progress)
        raise ProviderError(
            "provider_error",
            gettext("The job was stopped before the provider finished."),
        )

    def _check_time(self) -> None:
        now = time.monotonic()
        deadline = self.request.deadline_seconds
        if now - self.started > deadline:
            raise ProviderError(
                "provider_timeout",
                gettext("The provider did not finish within %(seconds)s seconds.")
                % {"seconds": f"{deadline:.0f}"},
            )
        if now - self.last_bytes_at > settings.SORA_READ_TIMEOUT:
            raise silence_error()

    def _end_by_error(self, error: BaseException) -> bytes:
        if isinstance(error, ReadTimeoutError | socket.timeout):
            raise silence_error() from error

        # A broken connection ends the stream like a close does. What arrived
        # decides the outcome, in result_urls.
        logger.warning(
            "sora2 stream broken job=%s provider=%s error=%s",
            self.request.job_id,
            self.request.provider_name,
            type(error).__name__,
        )
        return b""

    def _handle_line(self, raw: bytes) -> None:
        # The gateway writes UTF-8 without declaring a charset. requests would assume
        # ISO-8859-1 for text/*, which garbles Chinese text and the refusal marker.
        line = raw.decode("utf-8", errors="replace").strip()
        if not line or line.startswith(":") or line.startswith(SSE_FIELDS):
            return
        if not line.startswith("data:"):
            self._skip(line, "not a data line")
            return

        payload = line.removeprefix("data:").strip()
        if payload == "[DONE]":
            self.state.done = True
            return
        try:
            event = json.loads(payload)
        except ValueError:
            self._skip(payload, "not JSON")
            return
        if not isinstance(event, dict):
            self._skip(payload, "not a JSON object")
            return
        self._handle_event(event, payload)

    def _handle_event(self, event: dict[str, Any], payload: str) -> None:
        self.state.events += 1
        if event.get("error"):
            raise error_chunk(payload)

        choices = event.get("choices")
        if not isinstance(choices, list) or not choices:
            return
        choice = choices[0] if isinstance(choices[0], dict) else {}
        delta = choice.get("delta")
        if isinstance(delta, dict):
            self._narrate(delta.get("reasoning_content"))
            self._append(delta.get("content"))
        self.state.finish_reason = str(choice.get("finish_reason") or "")

    def _narrate(self, text: Any) -> None:
        percent = progress_of(text) if isinstance(text, str) else None
        if percent is None or percent <= self.state.progress:
            return

        self.state.progress = percent
        self.context.progress(percent)

    def _append(self, content: Any) -> None:
        if not isinstance(content, str) or not content:
            return
        if len(self.state.text) + len(content) > MAX_CONTENT_CHARS:
            raise ProviderError(
                "provider_error",
                gettext("The provider sent over %(max)s characters of text.")
                % {"max": MAX_CONTENT_CHARS},
            )
        self.state.content.append(content)

    def _skip(self, text: str, reason: str) -> None:
        self.state.skipped += 1
        if self.state.skipped > MAX_LINE_WARNINGS:
            return
        logger.warning(
            "sora2 stream line skipped job=%s provider=%s reason=%s line=%r",
            self.request.job_id,
            self.request.provider_name,
            reason,
            text[:80],
        )

    def _close(self, pump: threading.Thread) -> None:
        shutdown(self.response)
        pump.join(PUMP_JOIN_SECONDS)
        self.response.close()

    def _record(self, error: BaseException | None) -> None:
        """Keep what the stream delivered on the job's debug record, for staff."""
        state = self.state
        summary = (
            f"events={state.events} progress={state.progress} "
            f"finish_reason={state.finish_reason or '-'} done={state.done} "
            f"skipped_lines={state.skipped}\ncontent: {state.text}"
        )
        secrets = [self.request.api_key] if self.request.api_key else []
        self.context.record_call(
            VendorCall(
                method="STREAM",
                url=redact_url(self.response.url, secrets),
                status=self.response.status_code,
                duration_ms=round((time.monotonic() - self.started) * 1000),
                response_excerpt=redact_url(summary, secrets)[:EXCERPT_CHARS],
                error=redact_url(describe(error), secrets)[:EXCERPT_CHARS],
            )
        )


def describe(error: BaseException | None) -> str:
    if error is None or isinstance(error, ProviderError):
        return str(error or "")
    return f"{type(error).__name__}: {error}"


def pump_bytes(
    response: requests.Response, sink: "queue.Queue[bytes | BaseException]"
) -> None:
    """Move bytes from the socket to `sink` until the end (b"") or an error."""
    try:
        while True:
            data = response.raw.read1(READ_SIZE, decode_content=True) or b""
            sink.put(data)
            if not data:
                return
    # Handed to the reading thread, which classifies it.
    except Exception as error:
        sink.put(error)


def shutdown(response: requests.Response) -> None:
    """Wake the pump thread, whose blocking read a plain close would not end."""
    # These errors mean the connection is already closed or released, so nothing
    # is reading.
    with contextlib.suppress(AttributeError, RuntimeError, ValueError, OSError):
        response.raw.shutdown()


def progress_of(text: str) -> int | None:
    """Return the percent that a narration line reports, or None."""
    match = PROGRESS_LINE.search(text)
    if match:
        # 100 is kept for a stored result, which still needs its download.
        return min(int(match[1]), 99)
    for marker, percent in MILESTONES:
        if marker in text:
            return percent
    return None


def result_urls(state: StreamState) -> list[str]:
    """Return the result URLs of a finished stream. Raises ProviderError without any."""
    text = state.text
    found = [match[2] for match in VIDEO_SOURCE.finditer(text)]
    found += [match[1] for match in MARKDOWN_IMAGE.finditer(text)]
    urls = [url.replace("&amp;", "&") for url in found]
    urls = [url for url in dict.fromkeys(urls) if url.startswith(("http:", "https:"))]
    if urls:
        return urls

    if state.ended and text.strip():
        raise refusal_error(text)
    if state.ended:
        raise ProviderError(
            "provider_error",
            gettext("The provider finished without returning a result."),
        )
    # The gateway had accepted the work, so submitting again could pay twice.
    raise ProviderError(
        "provider_error",
        gettext("The provider's stream ended before the result arrived."),
        retryable=False,
    )


def refusal_error(text: str) -> ProviderError:
    """Turn a final text without a URL, usually a refusal, into the user's message."""
    message = " ".join(text.replace(REFUSAL_MARKER, " ").split())
    if len(message) > MESSAGE_CHARS:
        message = message[: MESSAGE_CHARS - 1] + "…"
    return ProviderError("provider_rejected", message)


def error_chunk(payload: str) -> ProviderError:
    """Classify a mid-stream error event, never retryable: the work was accepted."""
    message = vendor_message(payload) or gettext("no message")
    lowered = message.lower()
    timed_out = "timeout" in lowered or "timed out" in lowered
    code = "provider_timeout" if timed_out else "provider_error"
    return ProviderError(
        code,
        gettext("The provider reported an error: %(message)s") % {"message": message},
    )


def silence_error() -> ProviderError:
    seconds = settings.SORA_READ_TIMEOUT
    return ProviderError(
        "provider_timeout",
        gettext(
            "The provider sent nothing for %(seconds)s seconds. It had accepted the "
            "request, so it was not sent again to avoid a second charge."
        )
        % {"seconds": f"{seconds:g}"},
    )
