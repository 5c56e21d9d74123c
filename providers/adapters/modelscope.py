"""ModelScope API-Inference image generation in async task mode.

The adapter submits a task, stores its id on the job and polls the task until it
succeeds, fails or passes the model's deadline. A job that already has a task id
(its worker died while polling) polls that task again and never submits.
"""

import base64
import logging
import time
from typing import Any, ClassVar

import requests
from django.conf import settings
from django.utils.translation import gettext

from providers.adapters.base import GenerationRequest, JobContext, ResultFile
from providers.download import download_for_job
from providers.errors import ProviderError
from providers.http import VendorClient

logger = logging.getLogger(__name__)

SUBMIT_PATH = "/v1/images/generations"
TASK_PATH = "/v1/tasks/{task_id}"
SUBMIT_HEADERS = {"X-ModelScope-Async-Mode": "true"}
POLL_HEADERS = {"X-ModelScope-Task-Type": "image_generation"}
# Job params that ModelScope takes under the same name. The submit service has
# already checked them against the model's limits.
PASSED_PARAMS = ("size", "seed", "steps", "guidance", "negative_prompt")
WAITING_STATUSES = frozenset({"PENDING", "RUNNING", "PROCESSING"})

POLL_BACKOFF = 1.5
# How often the wait between polls checks whether the job must stop.
STOP_CHECK_SECONDS = 0.1
# ModelScope can return "task not found" for a moment after it accepted a task,
# so a poll that finds no task is repeated before the job fails.
MAX_NOT_FOUND_POLLS = 3

SUBMITTED_PROGRESS = 5
WAITING_PROGRESS_CAP = 90
DOWNLOADED_PROGRESS = 99
# Progress while waiting eases from 5 towards 90, halving the remaining gap every
# deadline / 3 seconds. It reaches 79 at the deadline and still rises by one point
# about every deadline / 22 seconds there, and each stored rise extends the lease.
PROGRESS_HALF_LIFE_SHARE = 1 / 3

# Words of ModelScope's content-inspection failures, compared in lower case.
REFUSAL_WORDS = (
    "敏感",
    "违规",
    "违禁",
    "不合规",
    "审核",
    "inspection",
    "sensitive",
    "inappropriate",
    "content policy",
    "moderation",
    "nsfw",
)
VENDOR_MESSAGE_CHARS = 300


class ModelScopeAdapter:
    kind: ClassVar[str] = "modelscope"

    def generate(
        self, request: GenerationRequest, context: JobContext
    ) -> list[ResultFile]:
        """Submit (or resume) a ModelScope task and download its images.

        Raises ProviderError. Returns [] only when the job must stop and the
        context's progress() did not raise.
        """
        client = VendorClient(
            request,
            context,
            connect_timeout=settings.VENDOR_CONNECT_TIMEOUT,
            read_timeout=settings.VENDOR_READ_TIMEOUT,
        )
        task_id = request.remote_task_id
        if not task_id:
            reply = submit_task(client, request)
            legacy_urls = legacy_image_urls(reply)
            if legacy_urls is not None:
                return download_images(legacy_urls, request, context)
            task_id = task_id_of(reply)
            context.save_task_id(task_id)
        event = "resumed" if request.remote_task_id else "submitted"
        logger.info(
            "modelscope task %s job=%s provider=%s task=%s",
            event,
            request.job_id,
            request.provider_name,
            task_id,
        )

        poller = TaskPoller(client, request, context, task_id)
        context.progress(poller.percent)
        urls = poller.wait()
        if urls is None:
            return []
        return download_images(urls, request, context)


def submit_task(client: VendorClient, request: GenerationRequest) -> dict:
    """POST the generation request in async mode and return the parsed reply."""
    response = client.send(
        "POST", SUBMIT_PATH, json=submit_body(request), headers=SUBMIT_HEADERS
    )
    # A 2xx reply may mean the vendor accepted (and billed) the work, so a reply
    # that cannot be read fails the job instead of submitting again.
    return json_object(response, gettext("submit"))


def submit_body(request: GenerationRequest) -> dict[str, Any]:
    body: dict[str, Any] = {"model": request.remote_model, "prompt": request.prompt}
    for name in PASSED_PARAMS:
        value = request.params.get(name)
        if value is not None and value != "":
            body[name] = value

    reference = request.reference
    if reference is not None:
        # NOTE: ModelScope documents image_url as a URL. A data: URL is unverified.
        encoded = base64.b64encode(reference.content).decode("ascii")
        body["image_url"] = f"data:{reference.mime_type};base64,{encoded}"
    return body


def json_object(
    response: requests.Response, step: str, retryable: bool = False
) -> dict:
    """Parse a 2xx reply as a JSON object, or raise ProviderError."""
    try:
        parsed = response.json()
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict):
        raise ProviderError(
            "provider_error",
            gettext("ModelScope sent a %(step)s reply that is not a JSON object.")
            % {"step": step},
            retryable=retryable,
        )
    return parsed


def legacy_image_urls(reply: dict) -> list[str] | None:
    """Return the URLs of a synchronous-mode reply, or None for a task reply."""
    if reply.get("task_id") or "images" not in reply:
        return None

    images = reply["images"]
    urls = [image.get("url") for image in images if isinstance(image, dict)]
    urls = [url for url in urls if isinstance(url, str) and url]
    if not urls:
        raise ProviderError(
            "provider_error", gettext("ModelScope returned no image URL.")
        )
    return urls


def task_id_of(reply: dict) -> str:
    task_id = reply.get("task_id")
    if not isinstance(task_id, str) or not task_id:
        raise ProviderError(
            "provider_error",
            gettext("ModelScope accepted the request but returned no task id."),
        )
    return task_id


class TaskPoller:
    """A poller of one ModelScope task, with backoff, until it ends or times out."""

    def __init__(
        self,
        client: VendorClient,
        request: GenerationRequest,
        context: JobContext,
        task_id: str,
    ) -> None:
        self.client = client
        self.request = request
        self.context = context
        self.task_id = task_id
        self.started = time.monotonic()
        self.deadline = self.started + request.deadline_seconds
        self.interval = settings.MODELSCOPE_POLL_SECONDS
        self.not_found_polls = 0
        self.percent = SUBMITTED_PROGRESS
        if request.remote_task_id:
            # A resumed task goes on from the progress users saw, not back to 5.
            resumed = min(request.progress, WAITING_PROGRESS_CAP - 1)
            self.percent = max(self.percent, resumed)

    def wait(self) -> list[str] | None:
        """Return the output image URLs, or None when the job must stop.

        Raises ProviderError when the task fails, disappears or misses the deadline.
        """
        while True:
            if not self._sleep(self._next_pause()):
                return None

            task = self._poll()
            status = task.get("task_status")
            if status == "SUCCEED":
                return output_urls(task)
            if status == "FAILED":
                raise task_failure(task)
            if task and status not in WAITING_STATUSES:
                raise ProviderError(
                    "provider_error",
                    gettext("ModelScope reported an unknown task status %(status)s.")
                    % {"status": repr(status)},
                )

            self._raise_if_late()
            self._report_progress()

    def _next_pause(self) -> float:
        pause = min(self.interval, max(0.0, self.deadline - time.monotonic()))
        self.interval = min(
            self.interval * POLL_BACKOFF, settings.MODELSCOPE_POLL_MAX_SECONDS
        )
        return pause

    def _sleep(self, seconds: float) -> bool:
        """Wait `seconds` in short steps. Return False when the job must stop."""
        until = time.monotonic() + seconds
        while True:
            if self.context.should_stop():
                # Raises the worker's stop exception for a cancel or a shutdown.
                self.context.progress(self.percent)
                return False
            remaining = until - time.monotonic()
            if remaining <= 0:
                return True
            time.sleep(min(STOP_CHECK_SECONDS, remaining))

    def _poll(self) -> dict:
        """Fetch the task, or return {} while ModelScope does not find it."""
        path = TASK_PATH.format(task_id=self.task_id)
        try:
            response = self.client.send("GET", path, headers=POLL_HEADERS)
        except ProviderError as error:
            if not is_not_found_error(error):
                raise
            return self._count_not_found(error.message)

        # The task id is stored, so a retry only polls again.
        task = json_object(response, gettext("task status"), retryable=True)
        if "task_status" not in task and mentions_not_found(str(task)):
            return self._count_not_found(str(task)[:VENDOR_MESSAGE_CHARS])
        self.not_found_polls = 0
        return task

    def _count_not_found(self, detail: str) -> dict:
        self.not_found_polls += 1
        logger.warning(
            "modelscope task not found job=%s provider=%s task=%s polls=%d",
            self.request.job_id,
            self.request.provider_name,
            self.task_id,
            self.not_found_polls,
        )
        if self.not_found_polls >= MAX_NOT_FOUND_POLLS:
            # Resuming would poll the same missing task, so this is final.
            raise ProviderError(
                "provider_error",
                gettext(
                    "ModelScope lost the task: it was not found after "
                    "%(polls)s polls (%(detail)s)."
                )
                % {"polls": self.not_found_polls, "detail": detail},
            )
        return {}

    def _raise_if_late(self) -> None:
        if time.monotonic() < self.deadline:
            return

        seconds = round(self.request.deadline_seconds)
        raise ProviderError(
            "provider_timeout",
            gettext(
                "The provider did not finish the image within %(seconds)s seconds. "
                "Try again later."
            )
            % {"seconds": seconds},
        )

    def _report_progress(self) -> None:
        elapsed = time.monotonic() - self.started
        half_life = max(1.0, self.request.deadline_seconds * PROGRESS_HALF_LIFE_SHARE)
        remaining_share = 0.5 ** (elapsed / half_life)
        span = WAITING_PROGRESS_CAP - SUBMITTED_PROGRESS
        percent = WAITING_PROGRESS_CAP - round(span * remaining_share)
        self.percent = max(self.percent, min(percent, WAITING_PROGRESS_CAP - 1))
        self.context.progress(self.percent)


def is_not_found_error(error: ProviderError) -> bool:
    # VendorClient keeps the status only in the message, as "(HTTP 404)".
    if error.code != "invalid_request":
        return False
    return "(HTTP 404)" in error.message or mentions_not_found(error.message)


def mentions_not_found(text: str) -> bool:
    lowered = text.lower()
    return "not found" in lowered or "not exist" in lowered or "不存在" in lowered


def output_urls(task: dict) -> list[str]:
    images = task.get("output_images")
    urls = [url for url in images or [] if isinstance(url, str) and url]
    if not urls:
        raise ProviderError(
            "provider_error",
            gettext("ModelScope finished the task but returned no image."),
        )
    return urls


def task_failure(task: dict) -> ProviderError:
    """Build the error for a FAILED task, which is never retried."""
    # The vendor accepted this task, so a retry could pay for a second one.
    errors = task.get("errors")
    errors = errors if isinstance(errors, dict) else {}
    message = " ".join(str(errors.get("message") or "").split())
    message = message[:VENDOR_MESSAGE_CHARS]
    code = str(errors.get("code") or "")

    if is_refusal(f"{message} {code}"):
        return ProviderError(
            "provider_rejected",
            gettext(
                "ModelScope rejected the prompt under its content policy "
                "(%(message)s). Change the prompt and try again."
            )
            % {"message": message},
        )
    detail = message or code or gettext("no reason given")
    return ProviderError(
        "provider_error",
        gettext("ModelScope failed the task (%(detail)s).") % {"detail": detail},
    )


def is_refusal(text: str) -> bool:
    lowered = text.lower()
    return any(word in lowered for word in REFUSAL_WORDS)


def download_images(
    urls: list[str], request: GenerationRequest, context: JobContext
) -> list[ResultFile]:
    """Download every result image at once, because ModelScope's links expire."""
    context.progress(WAITING_PROGRESS_CAP)
    results = []
    for index, url in enumerate(urls, start=1):
        results.append(download_for_job(url, request, context))
        span = DOWNLOADED_PROGRESS - WAITING_PROGRESS_CAP
        context.progress(WAITING_PROGRESS_CAP + span * index // len(urls))
    return results
