"""Real small PNG and MP4 bytes for fake vendors to serve."""

import functools

from providers.adapters.base import GenerationRequest
from providers.adapters.local import LocalAdapter


class _Silent:
    def progress(self, percent: int) -> None:
        pass

    def save_task_id(self, task_id: str) -> None:
        pass

    def record_call(self, call) -> None:
        pass

    def should_stop(self) -> bool:
        return False


@functools.cache
def png_bytes(size: str = "64x64", seed: int = 1) -> bytes:
    return _render("image", size, seed, {})


@functools.cache
def mp4_bytes(size: str = "64x36", seconds: int = 1) -> bytes:
    return _render("video", size, 1, {"duration": seconds})


def _render(kind: str, size: str, seed: int, extra: dict) -> bytes:
    request = GenerationRequest(
        job_id="fake",
        kind=kind,
        remote_model="fake",
        prompt="fake vendor result",
        params={"size": size, "seed": seed, **extra},
    )
    return LocalAdapter().generate(request, _Silent())[0].content
