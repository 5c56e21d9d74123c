import io
import types
from fractions import Fraction

import av
import pytest
from django.conf import LazySettings
from PIL import Image, ImageChops, ImageStat

from providers.adapters import local
from providers.adapters.base import GenerationRequest, VendorCall
from providers.adapters.local import LocalAdapter
from providers.errors import ProviderError

# The full-width comma and exclamation mark are part of the case under test.
CAT_PROMPT = "一只在雨中奔跑的橘猫，赛博朋克风格！🐱"  # noqa: RUF001
# Saved before the autouse fixture replaces it, for the tests of the setting itself.
read_render_delay = local.render_delay_seconds


class Canceled(Exception):
    pass


class FakeContext:
    """JobContext that records progress and raises Canceled at report `cancel_at`."""

    def __init__(self, cancel_at: int | None = None) -> None:
        self.reports: list[int] = []
        self.cancel_at = cancel_at

    def progress(self, percent: int) -> None:
        self.reports.append(percent)
        if len(self.reports) == self.cancel_at:
            raise Canceled

    def save_task_id(self, task_id: str) -> None:
        raise AssertionError(f"unexpected vendor task id {task_id!r}")

    def record_call(self, call: VendorCall) -> None:
        raise AssertionError(f"unexpected vendor call {call!r}")

    def should_stop(self) -> bool:
        return False


@pytest.fixture(autouse=True)
def no_render_delay(monkeypatch: pytest.MonkeyPatch) -> None:
    # The project settings pace demo renders, which would only slow these tests.
    monkeypatch.setattr(local, "render_delay_seconds", lambda: 0.0)


def make_request(
    kind: str, prompt: str = "a lighthouse", **params: object
) -> GenerationRequest:
    params.setdefault("seed", 7)
    params.setdefault("size", "96x64")
    return GenerationRequest(
        job_id="job-1", kind=kind, remote_model="preview", prompt=prompt, params=params
    )


def generate(kind: str, prompt: str = "a lighthouse", **params: object) -> list[bytes]:
    request = make_request(kind, prompt, **params)
    return [
        result.content for result in LocalAdapter().generate(request, FakeContext())
    ]


def open_png(content: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(content))
    image.load()
    return image


def mean_difference(first: bytes, second: bytes) -> float:
    """Compute the mean absolute per-channel difference, from 0 to 255."""
    difference = ImageChops.difference(open_png(first), open_png(second))
    return sum(ImageStat.Stat(difference).mean) / 3


def describe_video(content: bytes) -> dict[str, object]:
    with av.open(io.BytesIO(content)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(video=0))
        return {
            "codec": stream.codec_context.name,
            "pix_fmt": stream.codec_context.pix_fmt,
            "width": stream.width,
            "height": stream.height,
            "duration": float(stream.duration * stream.time_base),
            "frames": frames,
            "rate": stream.average_rate,
        }


def test_adapter_kind_is_local() -> None:
    assert LocalAdapter.kind == "local"


def test_image_png_of_requested_size() -> None:
    [content] = generate("image", size="96x64")
    image = open_png(content)
    assert image.format == "PNG"
    assert image.size == (96, 64)


def test_image_result_mime_type() -> None:
    results = LocalAdapter().generate(make_request("image"), FakeContext())
    assert len(results) == 1
    assert results[0].mime_type == "image/png"


def test_image_large_square_size() -> None:
    [content] = generate("image", size="1024x1024")
    assert open_png(content).size == (1024, 1024)


def test_image_same_inputs_same_bytes() -> None:
    first = generate("image", prompt="a red fox", seed=11)
    second = generate("image", prompt="a red fox", seed=11)
    assert first == second


def test_image_different_prompts_differ() -> None:
    [fox] = generate("image", prompt="a red fox", seed=11)
    [lake] = generate("image", prompt="a frozen lake", seed=11)
    assert fox != lake
    assert mean_difference(fox, lake) > 10


def test_image_different_seeds_differ() -> None:
    [first] = generate("image", prompt="a red fox", seed=1)
    [second] = generate("image", prompt="a red fox", seed=2)
    assert mean_difference(first, second) > 10


def test_image_chinese_prompt_with_emoji() -> None:
    [cat] = generate("image", prompt=CAT_PROMPT)
    [ascii_cat] = generate("image", prompt="an orange cat running in the rain")
    assert open_png(cat).size == (96, 64)
    assert generate("image", prompt=CAT_PROMPT) == [cat]
    assert mean_difference(cat, ascii_cat) > 10


def test_image_count_uses_consecutive_seeds() -> None:
    images = generate("image", seed=40, n=3)
    assert len(images) == 3
    assert images[0] == generate("image", seed=40)[0]
    assert images[1] == generate("image", seed=41)[0]
    assert images[2] == generate("image", seed=42)[0]


@pytest.mark.parametrize("size", ["640x360", "360x640"])
def test_video_h264_of_requested_size(size: str) -> None:
    width, height = (int(side) for side in size.split("x"))
    [content] = generate("video", size=size, duration=2)
    video = describe_video(content)
    assert video["codec"] == "h264"
    assert video["pix_fmt"] == "yuv420p"
    assert video["width"] == width
    assert video["height"] == height


def test_video_duration_matches_request() -> None:
    [content] = generate("video", size="64x48", duration=3)
    video = describe_video(content)
    assert video["duration"] == pytest.approx(3.0, abs=0.1)
    assert video["frames"] == 36
    assert video["rate"] == Fraction(12)


def test_video_default_duration_four_seconds() -> None:
    [content] = generate("video", size="64x48")
    assert describe_video(content)["duration"] == pytest.approx(4.0, abs=0.1)


def test_video_duration_capped_at_ten_seconds() -> None:
    [content] = generate("video", size="32x32", duration=60)
    assert describe_video(content)["duration"] == pytest.approx(10.0, abs=0.1)


def test_video_odd_size_rounded_down_to_even() -> None:
    [content] = generate("video", size="101x75", duration=1)
    video = describe_video(content)
    assert video["width"] == 100
    assert video["height"] == 74


def test_video_index_before_media_data() -> None:
    [content] = generate("video", size="64x48", duration=1)
    assert content.find(b"moov") < content.find(b"mdat")


def test_video_frames_change_over_time() -> None:
    [content] = generate("video", size="64x48", duration=2)
    with av.open(io.BytesIO(content)) as container:
        frames = [frame.to_image() for frame in container.decode(video=0)]
    difference = ImageChops.difference(frames[0], frames[len(frames) // 2])
    assert sum(ImageStat.Stat(difference).mean) / 3 > 2


def test_video_result_mime_type() -> None:
    request = make_request("video", size="64x48", duration=1)
    [result] = LocalAdapter().generate(request, FakeContext())
    assert result.mime_type == "video/mp4"


@pytest.mark.parametrize(
    ("kind", "params"),
    [("image", {"n": 3}), ("video", {"size": "64x48", "duration": 4})],
)
def test_progress_rises_to_100(kind: str, params: dict[str, object]) -> None:
    context = FakeContext()
    LocalAdapter().generate(make_request(kind, **params), context)
    reports = context.reports
    assert len(reports) >= 3
    assert reports == sorted(reports)
    assert reports[-1] == 100
    assert all(0 <= percent <= 100 for percent in reports)


def test_progress_error_stops_video() -> None:
    context = FakeContext(cancel_at=2)
    request = make_request("video", size="64x48", duration=4)
    with pytest.raises(Canceled):
        LocalAdapter().generate(request, context)
    assert len(context.reports) == 2


def test_progress_error_stops_images() -> None:
    context = FakeContext(cancel_at=1)
    with pytest.raises(Canceled):
        LocalAdapter().generate(make_request("image", n=3), context)
    assert len(context.reports) == 1


@pytest.mark.parametrize(
    "size",
    [
        "big",
        "1024",
        "x",
        "10x",
        "x10",
        "0x0",
        "8x8",
        "64x-5",
        "64.5x64",
        "99999x64",
        "9" * 5000 + "x64",
        "\uff16\uff14x\uff16\uff14",  # full-width digits
        None,
    ],
)
def test_size_invalid_raises(size: object) -> None:
    with pytest.raises(ProviderError) as raised:
        generate("image", size=size)
    assert raised.value.code == "invalid_request"
    assert repr(size) in raised.value.message


def test_size_video_above_limit_raises() -> None:
    with pytest.raises(ProviderError) as raised:
        generate("video", size="3840x2160")
    assert raised.value.code == "invalid_request"


def test_size_accepts_spaces_and_capital_x() -> None:
    [content] = generate("image", size=" 48X32 ")
    assert open_png(content).size == (48, 32)


@pytest.mark.parametrize(
    ("kind", "params"),
    [
        ("image", {"seed": "7"}),
        ("image", {"seed": True}),
        ("image", {"n": 0}),
        ("image", {"n": 11}),
        ("image", {"n": "2"}),
        ("video", {"duration": 0}),
        ("video", {"duration": "4"}),
        ("audio", {}),
    ],
)
def test_params_invalid_raise(kind: str, params: dict[str, object]) -> None:
    with pytest.raises(ProviderError) as raised:
        generate(kind, **params)
    assert raised.value.code == "invalid_request"
    assert raised.value.retryable is False


def test_delay_spread_over_reports(monkeypatch: pytest.MonkeyPatch) -> None:
    sleeps: list[float] = []
    monkeypatch.setattr(local, "render_delay_seconds", lambda: 0.6)
    monkeypatch.setattr(local.time, "sleep", sleeps.append)
    context = FakeContext()
    LocalAdapter().generate(make_request("image", n=3), context)
    assert len(sleeps) == len(context.reports)
    assert sum(sleeps) == pytest.approx(0.6)


def test_delay_read_from_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_settings = types.SimpleNamespace(LOCAL_RENDER_DELAY_SECONDS=1.5)
    monkeypatch.setattr(local, "settings", fake_settings)
    assert read_render_delay() == 1.5


def test_delay_zero_when_setting_absent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local, "settings", types.SimpleNamespace())
    assert read_render_delay() == 0.0


def test_delay_zero_without_django_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DJANGO_SETTINGS_MODULE", raising=False)
    monkeypatch.setattr(local, "settings", LazySettings())
    assert read_render_delay() == 0.0
