"""A fake OpenAI Videos API, driven by a scenario name.

Scenarios:
- "ok": queued, then in_progress with rising progress, then completed. Polls
  return an `openai-poll-after-ms: 20` header and /content serves a real MP4.
- "failed", "policy_failed": the task fails with an error code.
- "auth": 401.
- "rate_limited_create": 429 on the first create, then as "ok".
- "never_finishes": in_progress forever, without the poll header.
- "content_403": as "ok", but /content returns 403.
- "poll_server_error": 500 on the first status poll, then as "ok".
- "poll_garbled": an HTML page with status 200 on the first status poll.
"""

import re
import threading
import time
from urllib.parse import parse_qs, urlsplit

from providers.tests.fakes.media import mp4_bytes
from providers.tests.fakes.openai_images import (
    Part,
    form_fields,
    invalid_key,
    openai_error,
    parse_multipart,
    unauthorized,
)
from providers.tests.fakes.server import FakeVendor, Recorded, Reply

POLL_AFTER_MS = 20
RETRY_AFTER_SECONDS = 3
VIDEO_SECONDS = ("4", "8", "12")
VIDEO_PATH = re.compile(r"^/v1/videos/(?P<id>[A-Za-z0-9_-]+)(?P<content>/content)?$")
# Status and progress returned at each poll of one video. The last entry repeats.
TIMELINES = {
    "ok": [("queued", 0), ("in_progress", 30), ("in_progress", 70), ("completed", 100)],
    "failed": [("in_progress", 20), ("failed", 20)],
    "policy_failed": [("in_progress", 10), ("failed", 10)],
    "never_finishes": [("queued", 0), ("in_progress", 40)],
}
ERRORS = {
    "failed": {
        "code": "video_generation_failed",
        "message": "The video could not be generated.",
    },
    "policy_failed": {
        "code": "moderation_blocked",
        "message": "Your request was blocked by our moderation system.",
    },
}


class FakeOpenAIVideos(FakeVendor):
    def __init__(self, scenario: str = "ok", host: str = "127.0.0.1") -> None:
        super().__init__(scenario, host)
        self.videos: dict[str, dict] = {}
        self.polls: dict[str, int] = {}
        # time.monotonic() of every status poll, for checks of the poll spacing.
        self.poll_times: list[float] = []
        # The multipart parts of every create request that had a reference image.
        self.uploads: list[dict[str, Part]] = []
        self._next_id = 0
        self._state_lock = threading.Lock()

    def add_video(self, video_id: str, model: str = "sora-2") -> None:
        """Make a video that an earlier worker created, for resume tests."""
        with self._state_lock:
            self.videos[video_id] = _video(video_id, model, "8", "1280x720")
            self.polls[video_id] = 0

    def handle(self, request: Recorded) -> Reply:
        if failure := unauthorized(request):
            return failure
        path = urlsplit(request.path).path
        if request.method == "POST" and path == "/v1/videos":
            return self._create(request)
        match = VIDEO_PATH.match(path)
        if request.method != "GET" or match is None:
            return openai_error(404, "Invalid URL", "invalid_request_error", None)
        if match["id"] not in self.videos:
            return openai_error(
                404,
                f"Video with id '{match['id']}' not found.",
                "invalid_request_error",
                None,
            )
        if match["content"]:
            return self._content(match["id"], request.path)
        return self._poll(match["id"])

    def _create(self, request: Recorded) -> Reply:
        if self.scenario == "auth":
            return invalid_key()
        if self.scenario == "rate_limited_create" and self.count("POST", "/v1") == 1:
            return openai_error(
                429,
                "Rate limit reached for sora-2 on requests per min (RPM): "
                "Limit 2, Used 2, Requested 1.",
                "requests",
                "rate_limit_exceeded",
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            )

        fields = form_fields(request)
        if invalid := _invalid_fields(fields):
            return invalid
        parts = parse_multipart(request)
        if parts:
            with self.lock:
                self.uploads.append(parts)
        return Reply(body=self._new_video(fields))

    def _new_video(self, fields: dict) -> dict:
        with self._state_lock:
            self._next_id += 1
            video_id = f"video_{self._next_id:04d}fake"
            video = _video(video_id, fields["model"], fields["seconds"], fields["size"])
            self.videos[video_id] = video
            self.polls[video_id] = 0
        return video

    def _poll(self, video_id: str) -> Reply:
        with self._state_lock:
            self.poll_times.append(time.monotonic())
            if self.scenario == "poll_server_error" and len(self.poll_times) == 1:
                return openai_error(
                    500,
                    "The server had an error processing your request.",
                    "server_error",
                    None,
                )
            if self.scenario == "poll_garbled" and len(self.poll_times) == 1:
                return Reply(
                    body=b"<html><body>Bad gateway</body></html>",
                    headers={"Content-Type": "text/html"},
                )
            self.polls[video_id] += 1
            video = self._advance(video_id, self.polls[video_id])
        headers = {}
        if self.scenario != "never_finishes":
            headers["openai-poll-after-ms"] = str(POLL_AFTER_MS)
        return Reply(body=video, headers=headers)

    def _advance(self, video_id: str, poll: int) -> dict:
        timeline = TIMELINES.get(self.scenario, TIMELINES["ok"])
        status, progress = timeline[min(poll, len(timeline)) - 1]
        video = self.videos[video_id]
        video.update(status=status, progress=progress)
        if status == "completed":
            video["completed_at"] = int(time.time())
            video["expires_at"] = video["completed_at"] + 3600
        if status == "failed":
            video["error"] = ERRORS[self.scenario]
        return dict(video)

    def _content(self, video_id: str, raw_path: str) -> Reply:
        variant = parse_qs(urlsplit(raw_path).query).get("variant", ["video"])[0]
        if variant != "video":
            return openai_error(
                400, f"Unexpected variant {variant!r}.", "invalid_request_error", None
            )
        if self.videos[video_id]["status"] != "completed":
            return openai_error(
                400, "Video is not ready yet.", "invalid_request_error", None
            )
        if self.scenario == "content_403":
            return openai_error(
                403,
                "You do not have access to the content of this video.",
                "invalid_request_error",
                None,
            )
        return Reply(body=mp4_bytes(), headers={"Content-Type": "video/mp4"})


def _invalid_fields(fields: dict) -> Reply | None:
    missing = [name for name in ("model", "prompt") if not fields.get(name)]
    if missing:
        return openai_error(
            400,
            f"Missing required parameter: '{missing[0]}'.",
            "invalid_request_error",
            "missing_required_parameter",
        )
    if fields.get("seconds") not in VIDEO_SECONDS:
        return openai_error(
            400,
            f"Invalid value for 'seconds': {fields.get('seconds')!r}. "
            "Supported values are: '4', '8', and '12'.",
            "invalid_request_error",
            "invalid_value",
        )
    return None


def _video(video_id: str, model: str, seconds: str, size: str) -> dict:
    return {
        "id": video_id,
        "object": "video",
        "model": model,
        "status": "queued",
        "progress": 0,
        "created_at": int(time.time()),
        "completed_at": None,
        "expires_at": None,
        "seconds": seconds,
        "size": size,
        "quality": "standard",
        "remixed_from_video_id": None,
        "error": None,
    }
