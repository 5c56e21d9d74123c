"""A fake sora2api-style gateway: streamed chat completions with scenario chunks.

The chunks copy the gateway's framing: one `data: <json>` line and a blank line
per event, `text/event-stream` without a charset, UTF-8 JSON with non-ASCII text
written as is. Result files are served from the fake itself, so their URLs point
at the provider's own host.
"""

import base64
import json
import time
from typing import Any

from providers.tests.fakes.media import mp4_bytes, png_bytes
from providers.tests.fakes.server import FakeVendor, Recorded, Reply

MODELS = (
    "sora-video-10s",
    "sora-video-15s",
    "sora-video-landscape-10s",
    "sora-video-landscape-15s",
    "sora-video-portrait-10s",
    "sora-video-portrait-15s",
    "sora-image",
    "sora-image-landscape",
    "sora-image-portrait",
)
AVAILABILITY = "Sora2API is available. Send stream: true to generate."
TIMEOUT_MESSAGE = "Upstream API timeout: Generation exceeded 1500 seconds limit"
REFUSAL = (
    "❌ 生成失败: This content may violate our guardrails concerning similarity "
    "to third-party content."
)
VIDEO_SECONDS = 2
VIDEO_SIZE = "64x36"
EXPIRED_LINK = (
    '<?xml version="1.0" encoding="utf-8"?><Error><Code>AuthenticationFailed'
    "</Code><Message>Signed expiry time has passed.</Message></Error>"
)
SCENARIOS = {
    "video_ok",
    "image_ok",
    "error_chunk_after_progress",
    "refusal",
    "server_error",
    "auth",
    "rate_limited",
    "cut_without_done",
    "finish_without_done",
    "malformed_line",
    "result_403",
    "result_html",
    "slow",
    "image_ref",
}


class FakeSora2(FakeVendor):
    """Start with `with FakeSora2("video_ok") as fake:`; the key is "test-key"."""

    def __init__(
        self,
        scenario: str = "video_ok",
        *,
        api_key: str = "test-key",
        pause: float = 0.02,
        slow_pause: float = 5.0,
        error_message: str = TIMEOUT_MESSAGE,
        chunked: bool = False,
    ) -> None:
        if scenario not in SCENARIOS:
            raise ValueError(f"Unknown scenario {scenario!r}.")
        super().__init__(scenario)
        # The "auth" scenario expects another key, so the adapter's key is wrong.
        self.api_key = "another-key" if scenario == "auth" else api_key
        self.pause = slow_pause if scenario == "slow" else pause
        self.error_message = error_message
        # Without chunked encoding the stream ends when the connection closes.
        self.chunked = chunked
        # The image decoded from the data URL of an "image_ref" request.
        self.reference: bytes | None = None
        self.reference_mime = ""

    def handle(self, request: Recorded) -> Reply:
        path = request.path.split("?", 1)[0]
        if path.startswith("/files/"):
            return self._file(path.removeprefix("/files/"))
        if request.method == "GET" and path == "/v1/models":
            models = [{"id": name, "object": "model"} for name in MODELS]
            return Reply(body={"object": "list", "data": models})
        if request.method == "POST" and path == "/v1/chat/completions":
            return self._chat(request)
        return Reply(404, {"detail": "Not Found"})

    def _chat(self, request: Recorded) -> Reply:
        if denied := self._check_key(request):
            return denied
        body = request.json()
        if not body.get("stream"):
            return Reply(body=completion(AVAILABILITY))
        if self.scenario == "server_error":
            return Reply(500, server_error(body.get("model")))
        if self.scenario == "rate_limited":
            return Reply(429, {"detail": "Rate limit exceeded"}, {"Retry-After": "7"})
        if self.scenario == "image_ref" and (problem := self._take_reference(body)):
            return Reply(400, {"detail": problem})
        return self._stream(self.chunks(body.get("model", "")))

    def _check_key(self, request: Recorded) -> Reply | None:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer "):
            return Reply(403, {"detail": "Not authenticated"})
        if header.removeprefix("Bearer ") != self.api_key:
            return Reply(401, {"detail": "Invalid API key"})
        return None

    def _take_reference(self, body: dict[str, Any]) -> str:
        """Store the inline image of the last message and return "", or a problem."""
        content = body["messages"][-1]["content"]
        if not isinstance(content, list):
            return "expected an array of content parts"
        urls = [
            part["image_url"]["url"]
            for part in content
            if part.get("type") == "image_url"
        ]
        if len(urls) != 1 or not urls[0].startswith("data:"):
            return f"expected one data: image URL, got {urls!r}"
        header, _, encoded = urls[0].partition(",")
        self.reference_mime = header.removeprefix("data:").removesuffix(";base64")
        self.reference = base64.b64decode(encoded)
        return ""

    def _stream(self, events: list[bytes]) -> Reply:
        headers = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        if self.chunked:
            # One HTTP/1.1 chunk per event, the framing of a server that streams
            # without a Content-Length.
            headers["Transfer-Encoding"] = "chunked"
            events = [b"%x\r\n%s\r\n" % (len(item), item) for item in events]
            if self.scenario != "cut_without_done":
                events.append(b"0\r\n\r\n")
        return Reply(200, headers=headers, chunks=events, pause=self.pause)

    def chunks(self, model: str) -> list[bytes]:
        """Return the raw stream of the scenario, one bytes item per write."""
        image = model.startswith("sora-image") or self.scenario == "image_ok"
        if self.scenario == "error_chunk_after_progress":
            return [begins(), percent(36), error_event(self.error_message), DONE]
        if self.scenario == "refusal":
            policy = "**Content Policy Violation**\n\nThe request was rejected.\n"
            return [begins(), reasoning(policy), final(REFUSAL), DONE]
        if self.scenario == "cut_without_done":
            return [begins(), percent(12), percent(36)]
        if self.scenario == "malformed_line":
            garbage = [b"data: {not json at all\n\n", b"data: [DONE\n\n"]
            return [begins(), *garbage, percent(36), *self._result(image), DONE]
        if self.scenario == "finish_without_done":
            return [begins(), percent(81), *self._result(image)]
        return [begins(image), *self._progress(image), *self._result(image), DONE]

    def _progress(self, image: bool) -> list[bytes]:
        if image:
            return [reasoning("Image generation in progress... (10s elapsed)\n")]
        return [percent(12), percent(36), percent(81)]

    def _result(self, image: bool) -> list[bytes]:
        if not image:
            done = "**Video Generation Completed**\n\nCache is disabled. Using "
            done += "original URL directly...\n"
            video = f"<video src='{self._link('video.mp4')}' controls></video>"
            tag = f"```html\n{video}\n```"
            return [reasoning(done), final(tag)]
        count = 2 if self.scenario == "image_ok" else 1
        links = [self._link(f"image-{index}.png") for index in range(1, count + 1)]
        return [final("\n".join(f"![Generated Image]({link})" for link in links))]

    def _link(self, name: str) -> str:
        if self.scenario == "result_403":
            name = "expired-" + name
        elif self.scenario == "result_html":
            name = "page-" + name
        return f"{self.url}/files/{name}?se=2026-12-07&sig=REDACTED"

    def _file(self, name: str) -> Reply:
        if name.startswith("expired-"):
            return Reply(
                403, EXPIRED_LINK.encode(), {"Content-Type": "application/xml"}
            )
        if name.startswith("page-"):
            page = b"<!doctype html><html><body>Sign in to continue</body></html>"
            return Reply(200, page, {"Content-Type": "text/html; charset=utf-8"})
        if name == "video.mp4":
            content = mp4_bytes(VIDEO_SIZE, VIDEO_SECONDS)
            return Reply(200, content, {"Content-Type": "video/mp4"})
        if name.startswith("image-"):
            seed = int(name.removeprefix("image-").removesuffix(".png"))
            return Reply(200, png_bytes("48x32", seed), {"Content-Type": "image/png"})
        return Reply(404, b"Not Found", {"Content-Type": "text/plain"})


DONE = b"data: [DONE]\n\n"


def event(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
    """Frame one chat.completion.chunk the way the gateway writes it."""
    created = int(time.time())
    chunk = {
        "id": f"chatcmpl-{time.time_ns() // 1_000_000}",
        "object": "chat.completion.chunk",
        "created": created,
        "model": "sora",
        "choices": [
            {
                "index": 0,
                "delta": {**delta, "tool_calls": None},
                "finish_reason": finish_reason,
                "native_finish_reason": finish_reason,
            }
        ],
        "usage": {"prompt_tokens": 0},
    }
    return b"data: " + json.dumps(chunk, ensure_ascii=False).encode() + b"\n\n"


def begins(image: bool = False) -> bytes:
    if image:
        text = "**Image Generation Begins**\n\nGenerating image...\n"
    else:
        text = "**Generation Process Begins**\n\nInitializing generation request...\n"
    return event({"role": "assistant", "content": None, "reasoning_content": text})


def reasoning(text: str) -> bytes:
    return event({"content": None, "reasoning_content": text})


def percent(value: int) -> bytes:
    return reasoning(f"**Video Generation Progress**: {value}% (processing)\n")


def final(content: str) -> bytes:
    return event({"content": content, "reasoning_content": None}, "STOP")


def error_event(message: str) -> bytes:
    error = {"message": message, "type": "server_error", "param": None, "code": None}
    return (
        b"data: " + json.dumps({"error": error}, ensure_ascii=False).encode() + b"\n\n"
    )


def server_error(model: Any) -> dict[str, Any]:
    error = {"message": f"400: Invalid model: {model}", "type": "server_error"}
    return {"error": {**error, "param": None, "code": None}}


def completion(content: str) -> dict[str, Any]:
    """Return a non-streaming chat.completion, which generates nothing."""
    message = {"role": "assistant", "content": content}
    choice = {"index": 0, "message": message, "finish_reason": "stop"}
    return {
        "id": f"chatcmpl-{time.time_ns() // 1_000_000}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": "sora",
        "choices": [choice],
    }
