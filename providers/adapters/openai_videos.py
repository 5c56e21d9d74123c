"""OpenAI Videos API: create a video task, poll it, then fetch its content.

The task id is stored on the job before the first poll, so a restarted worker
resumes polling the same task instead of paying for a new one.
"""

import io
import logging
import math
import re
import time
from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import quote, urljoin

import requests
from django.conf import settings
from django.utils.translation import gettext
from PIL import Image, ImageOps

from providers.adapters.base import (
    GenerationRequest,
    JobContext,
    ReferenceImage,
    ResultFile,
)
from providers.adapters.openai_images import read_json, reference_upload
from providers.download import download_for_job
from providers.errors import ProviderError
from providers.http import POLICY_WORDS, VendorClient

logger = logging.getLogger(__name__)

VIDEOS_PATH = "/v1/videos"
POLL_AFTER_HEADER = "openai-poll-after-ms"
# Polling moves progress from CREATED_PROGRESS to POLLED_PROGRESS. The download
# and its checks take the rest.
CREATED_PROGRESS = 5
POLLED_PROGRESS = 95
# Waits are cut into steps this long, so a cancel is seen within about a second.
SLEEP_STEP_SECONDS = 0.1
# Bounds for the vendor's poll interval header, against a zero or absurd value.
MIN_POLL_SECONDS = 0.01
MAX_POLL_SECONDS = 60.0
MESSAGE_CHARS = 300
SIZE_PATTERN = re.compile(r"(?P<width>[0-9]{1,5})x(?P<height>[0-9]{1,5})")
CHUNK_BYTES = 64 * 1024


class OpenAIVideosAdapter:
    kind: ClassVar[str] = "openai_videos"

    def generate(
        self, request: GenerationRequest, context: JobContext
    ) -> list[ResultFile]:
        """Create the video (or resume request.remote_task_id) and return its MP4."""
        return [VideoTask(request, context).run()]


class VideoTask:
    """One job's video at the vendor: created or resumed, polled, downloaded."""

    def __init__(self, request: GenerationRequest, context: JobContext) -> None:
        self.request = request
        self.context = context
        self.client = VendorClient(
            request,
            context,
            connect_timeout=settings.VENDOR_CONNECT_TIMEOUT,
            read_timeout=settings.VENDOR_READ_TIMEOUT,
        )
        # NOTE: the deadline counts from the start of this attempt, so a resumed
        # task gets a fresh one. The job's attempt limit bounds the total.
        self.deadline = time.monotonic() + request.deadline_seconds
        self.percent = 0
        self.video_id = request.remote_task_id

    def run(self) -> ResultFile:
        if self.video_id:
            logger.info("video resumed %s", self._log_ids())
        else:
            self._create()
        self._report(CREATED_PROGRESS)

        self._wait_until_completed()
        content = self._download()
        self._report(100)
        logger.info("video received %s bytes=%d", self._log_ids(), len(content))
        return ResultFile(content=content, mime_type="video/mp4")

    def _create(self) -> None:
        fields = {
            "model": self.request.remote_model,
            "prompt": self.request.prompt,
            "seconds": _seconds(self.request.params),
            "size": self.request.params.get("size") or "",
        }
        reference = self.request.reference
        if reference is None:
            response = self.client.send("POST", VIDEOS_PATH, json=fields)
        else:
            fitted = fitted_reference(reference, fields["size"])
            files = {"input_reference": reference_upload(fitted, "reference")}
            response = self.client.send("POST", VIDEOS_PATH, data=fields, files=files)

        video_id = read_json(response, gettext("video task")).get("id")
        if not isinstance(video_id, str) or not video_id:
            raise ProviderError(
                "provider_error",
                gettext("The provider accepted the video but sent no id."),
            )
        self.context.save_task_id(video_id)
        self.video_id = video_id
        logger.info("video created %s", self._log_ids())

    def _wait_until_completed(self) -> None:
        while True:
            response = self.client.send("GET", self._path())
            video = self._read_status(response)
            status = video.get("status")
            if status == "completed":
                return
            if status == "failed":
                raise failure_error(video.get("error"))

            self._report(_scaled(video.get("progress"), self.percent))
            self._sleep(poll_interval(response.headers))

    def _read_status(self, response: requests.Response) -> dict[str, Any]:
        try:
            return read_json(response, gettext("video status"))
        except ProviderError as error:
            # The task id is stored, so a new attempt only polls again.
            error.retryable = True
            raise

    def _sleep(self, seconds: float) -> None:
        """Wait `seconds` or up to the deadline, stopping early for a cancel."""
        now = time.monotonic()
        if now >= self.deadline:
            raise ProviderError(
                "provider_timeout",
                gettext("The video was not finished within %(seconds)s seconds.")
                % {"seconds": f"{self.request.deadline_seconds:.0f}"},
            )

        wake_at = now + min(seconds, self.deadline - now)
        while (left := wake_at - time.monotonic()) > 0:
            if self.context.should_stop():
                self._stop()
            time.sleep(min(SLEEP_STEP_SECONDS, left))

    def _stop(self) -> None:
        # progress() raises the worker's stop exception for a stopped job.
        self.context.progress(self.percent)
        raise ProviderError(
            "provider_error",
            gettext("The job was stopped while the video was in progress."),
        )

    def _download(self) -> bytes:
        try:
            response = self.client.send(
                "GET",
                f"{self._path()}/content?variant=video",
                stream=True,
                read_timeout=settings.DOWNLOAD_READ_TIMEOUT,
                redirect=True,
            )
        except ProviderError as error:
            # Retrying resumes the finished task, so it cannot pay twice.
            if error.retryable:
                raise
            raise ProviderError(
                "result_download_failed",
                gettext("Downloading the finished video failed: %(message)s")
                % {"message": error.message},
            ) from error
        if response.is_redirect:
            # The bearer key stays home, and the target passes the address guard.
            location = urljoin(response.url, response.headers["Location"])
            response.close()
            return download_for_job(location, self.request, self.context).content
        with response:
            return read_limited(response, settings.MAX_RESULT_BYTES)

    def _report(self, percent: int) -> None:
        self.percent = percent
        self.context.progress(percent)

    def _path(self) -> str:
        return f"{VIDEOS_PATH}/{quote(self.video_id, safe='')}"

    def _log_ids(self) -> str:
        return (
            f"job={self.request.job_id} provider={self.request.provider_name} "
            f"video={self.video_id}"
        )


def _seconds(params: dict[str, Any]) -> str:
    duration = params.get("duration", 4)
    if isinstance(duration, float) and duration.is_integer():
        duration = int(duration)
    return str(duration)


def _scaled(progress: Any, current: int) -> int:
    """Map the vendor's 0-100 onto CREATED_PROGRESS..POLLED_PROGRESS, never back."""
    if isinstance(progress, bool) or not isinstance(progress, int | float):
        return current
    share = max(0.0, min(float(progress), 100.0)) / 100
    scaled = CREATED_PROGRESS + round(share * (POLLED_PROGRESS - CREATED_PROGRESS))
    return max(current, scaled)


def poll_interval(headers: Mapping[str, str]) -> float:
    """Return the vendor's requested poll interval in seconds, else the setting."""
    try:
        milliseconds = float(headers.get(POLL_AFTER_HEADER, ""))
    except ValueError:
        return settings.OPENAI_VIDEOS_POLL_SECONDS
    if not math.isfinite(milliseconds):
        return settings.OPENAI_VIDEOS_POLL_SECONDS
    return min(max(milliseconds / 1000, MIN_POLL_SECONDS), MAX_POLL_SECONDS)


def failure_error(error: Any) -> ProviderError:
    """Classify a failed video; never retryable, because the vendor took the work."""
    error = error if isinstance(error, dict) else {}
    code = str(error.get("code") or "unknown")
    message = str(error.get("message") or gettext("no message"))[:MESSAGE_CHARS]
    if any(word in f"{code} {message}".lower() for word in POLICY_WORDS):
        return ProviderError(
            "provider_rejected",
            gettext(
                "The provider refused this video under its content policy: %(message)s"
            )
            % {"message": message},
        )
    return ProviderError(
        "provider_error",
        gettext("The provider failed to make the video (%(code)s): %(message)s")
        % {"code": code, "message": message},
    )


def fitted_reference(reference: ReferenceImage, size: str) -> ReferenceImage:
    """Crop and scale the reference image to the video's `size` ("WxH").

    Gateways serving sora-2 document an input_reference of exactly the video's
    size (docs.gptproto.com, sora-2 image-to-video). An unparsable size leaves
    the image as it is.
    """
    match = SIZE_PATTERN.fullmatch(size)
    if match is None:
        return reference
    target = (int(match["width"]), int(match["height"]))
    if (reference.width, reference.height) == target:
        return reference

    with Image.open(io.BytesIO(reference.content)) as image:
        frame = ImageOps.fit(image.convert("RGB"), target, Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    frame.save(buffer, format="PNG")
    return ReferenceImage(buffer.getvalue(), "image/png", *target)


def read_limited(response: requests.Response, max_bytes: int) -> bytes:
    """Read a streamed body of at most `max_bytes`, or raise result_download_failed."""
    chunks: list[bytes] = []
    total = 0
    try:
        for chunk in response.iter_content(chunk_size=CHUNK_BYTES):
            total += len(chunk)
            if total > max_bytes:
                raise ProviderError(
                    "result_download_failed",
                    gettext("The video is larger than the limit of %(max)s bytes.")
                    % {"max": max_bytes},
                )
            chunks.append(chunk)
    except requests.RequestException as error:
        # The task is finished and its id stored, so a retry only downloads again.
        raise ProviderError(
            "result_download_failed",
            gettext("The download of the finished video broke off."),
            retryable=True,
        ) from error
    return b"".join(chunks)
