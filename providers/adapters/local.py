"""Offline preview renderer: abstract images and clips derived from the prompt.

Nothing here uses the network. The picture is a function of (prompt, seed, size), so
a demo install without vendor keys still produces stable, distinct results.
"""

import colorsys
import hashlib
import io
import math
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import av
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import gettext
from PIL import Image, ImageDraw, ImageFilter

from providers.adapters.base import GenerationRequest, JobContext, ResultFile
from providers.errors import ProviderError

RGB = tuple[int, int, int]
Size = tuple[int, int]
# JobContext.progress, which raises to stop the job. The renderers let that propagate.
ProgressCallback = Callable[[int], None]

SIZE_PATTERN = re.compile(r"(?P<width>[0-9]{1,5})[xX](?P<height>[0-9]{1,5})")
MIN_SIDE = 16
MAX_IMAGE_SIDE = 4096
MAX_VIDEO_SIDE = 1920
MAX_IMAGES = 10
FRAME_RATE = 12
DEFAULT_VIDEO_SECONDS = 4.0
MAX_VIDEO_SECONDS = 10.0
# Frames are drawn on a small canvas, blurred and scaled up. Soft shapes need no
# detail, and this keeps a 1280x720 frame cheap enough for a 12 fps render.
IMAGE_SKETCH_SIDE = 512
VIDEO_SKETCH_SIDE = 256
# A 10 s 1280x720 clip (render_video on a 2-core VM) measured about 550 KiB at the
# x264 default CRF 23 and about 185 KiB at CRF 30, with no visible loss here.
X264_OPTIONS = {"crf": "30", "preset": "veryfast"}


@dataclass(frozen=True)
class Shape:
    """A translucent shape, positioned in fractions of the canvas."""

    sides: int  # 0 for an ellipse
    x: float
    y: float
    radius: float
    color: RGB
    alpha: int
    orbit: float
    phase: float
    spin: float
    soft: bool


@dataclass(frozen=True)
class Scene:
    """Everything derived from prompt and seed that a frame needs."""

    top: RGB
    bottom: RGB
    angle: float
    shapes: tuple[Shape, ...]


class LocalAdapter:
    kind: ClassVar[str] = "local"

    def generate(
        self, request: GenerationRequest, context: JobContext
    ) -> list[ResultFile]:
        """Render PNG images or one H.264 MP4 from the prompt, without any network."""
        # NOTE: request.reference is ignored, so an image-to-image or image-to-video
        # job renders the same preview as a text-only job with the same prompt.
        params = request.params
        progress = context.progress
        seed = _read_seed(params)
        if request.kind == "image":
            size = parse_size(params.get("size"), MAX_IMAGE_SIDE)
            count = _read_count(params)
            return render_images(request.prompt, seed, size, count, progress)
        if request.kind == "video":
            size = _even(parse_size(params.get("size"), MAX_VIDEO_SIDE))
            seconds = _read_duration(params)
            return [render_video(request.prompt, seed, size, seconds, progress)]
        raise ProviderError(
            "invalid_request",
            gettext("Unsupported kind %(kind)s: expected 'image' or 'video'.")
            % {"kind": repr(request.kind)},
        )


def parse_size(value: Any, max_side: int) -> Size:
    """Parse "WIDTHxHEIGHT", raising ProviderError if malformed or out of range."""
    match = SIZE_PATTERN.fullmatch(str(value).strip())
    if match is None:
        raise ProviderError(
            "invalid_request",
            gettext(
                "Invalid size %(size)s: expected WIDTHxHEIGHT, for example 1024x1024."
            )
            % {"size": repr(value)},
        )
    width, height = int(match["width"]), int(match["height"])
    if not (MIN_SIDE <= width <= max_side and MIN_SIDE <= height <= max_side):
        raise ProviderError(
            "invalid_request",
            gettext(
                "Invalid size %(size)s: each side must be %(min)s to %(max)s pixels."
            )
            % {"size": repr(value), "min": MIN_SIDE, "max": max_side},
        )
    return width, height


def _even(size: Size) -> Size:
    # yuv420p stores chroma per 2x2 block, so libx264 rejects odd sides. Rounding
    # down changes such a size by one pixel.
    width, height = size
    return width - width % 2, height - height % 2


def _read_seed(params: dict[str, Any]) -> int:
    seed = params.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ProviderError(
            "invalid_request",
            gettext("Invalid seed %(seed)s: expected an integer.")
            % {"seed": repr(seed)},
        )
    return seed


def _read_count(params: dict[str, Any]) -> int:
    count = params.get("n", 1)
    if (
        isinstance(count, bool)
        or not isinstance(count, int)
        or not 1 <= count <= MAX_IMAGES
    ):
        raise ProviderError(
            "invalid_request",
            gettext("Invalid n %(count)s: expected 1 to %(max)s images.")
            % {"count": repr(count), "max": MAX_IMAGES},
        )
    return count


def _read_duration(params: dict[str, Any]) -> float:
    seconds = params.get("duration", DEFAULT_VIDEO_SECONDS)
    if (
        isinstance(seconds, bool)
        or not isinstance(seconds, int | float)
        or not seconds > 0
    ):
        raise ProviderError(
            "invalid_request",
            gettext("Invalid duration %(seconds)s: expected seconds above 0.")
            % {"seconds": repr(seconds)},
        )
    return min(float(seconds), MAX_VIDEO_SECONDS)


def render_delay_seconds() -> float:
    """Read LOCAL_RENDER_DELAY_SECONDS, the extra sleep spread over one demo render."""
    try:
        delay = getattr(settings, "LOCAL_RENDER_DELAY_SECONDS", 0)
    except ImproperlyConfigured:
        # Outside a Django project (scripts, plain tests) there is nothing to pace.
        return 0.0
    return max(0.0, float(delay))


class Pacer:
    """Progress reporter that sleeps an equal share of the render delay per report."""

    def __init__(self, progress: ProgressCallback, steps: int) -> None:
        self._progress = progress
        self._pause = render_delay_seconds() / max(1, steps)

    def report(self, percent: int) -> None:
        if self._pause > 0:
            time.sleep(self._pause)
        self._progress(percent)


def render_images(
    prompt: str, seed: int, size: Size, count: int, progress: ProgressCallback
) -> list[ResultFile]:
    """Render `count` PNGs, the i-th one from seed + i."""
    steps_per_image = 2
    pacer = Pacer(progress, count * steps_per_image)
    results = []
    for index in range(count):
        scene = build_scene(prompt, seed + index)
        image = draw_frame(scene, size, 0.0, IMAGE_SKETCH_SIDE)
        pacer.report(_percent(index * steps_per_image + 1, count * steps_per_image))
        results.append(ResultFile(content=encode_png(image), mime_type="image/png"))
        pacer.report(_percent((index + 1) * steps_per_image, count * steps_per_image))
    return results


def _percent(done: int, total: int) -> int:
    return done * 100 // total


def encode_png(image: Image.Image) -> bytes:
    """Encode without metadata, so equal pixels give equal bytes on one install."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=6)
    return buffer.getvalue()


def build_scene(prompt: str, seed: int) -> Scene:
    """Derive colors, gradient angle and shapes from sha256 of seed and prompt."""
    digest = hashlib.sha256(f"{seed}\x00{prompt}".encode()).digest()
    rng = random.Random(int.from_bytes(digest, "big"))
    palette = _palette(rng)
    top, bottom = palette[0], palette[1]
    shapes = tuple(_shape(rng, palette, soft=True) for _ in range(rng.randint(3, 5)))
    shapes += tuple(_shape(rng, palette, soft=False) for _ in range(rng.randint(2, 4)))
    return Scene(top=top, bottom=bottom, angle=rng.uniform(0, 360), shapes=shapes)


def _palette(rng: random.Random) -> list[RGB]:
    """Pick two background colors followed by four accents around one base hue."""
    hue = rng.random()
    # Analogous, split-complementary and complementary schemes, as hue offsets.
    offsets = rng.choice([(0.07, 0.93, 0.14), (0.42, 0.58, 0.06), (0.5, 0.06, 0.94)])
    dark = _hsv(hue, rng.uniform(0.5, 0.8), rng.uniform(0.25, 0.45))
    light = _hsv(hue + offsets[0], rng.uniform(0.35, 0.6), rng.uniform(0.75, 0.95))
    accents = [_hsv(hue + offset, rng.uniform(0.35, 0.65), 0.95) for offset in offsets]
    accents.append(_hsv(hue, 0.15, 1.0))
    return [dark, light, *accents]


def _hsv(hue: float, saturation: float, value: float) -> RGB:
    red, green, blue = colorsys.hsv_to_rgb(hue % 1.0, saturation, value)
    return round(red * 255), round(green * 255), round(blue * 255)


def _shape(rng: random.Random, palette: list[RGB], soft: bool) -> Shape:
    return Shape(
        sides=0 if soft else rng.choice([0, 0, 3, 4, 5, 6]),
        x=rng.uniform(0.1, 0.9),
        y=rng.uniform(0.1, 0.9),
        radius=rng.uniform(0.18, 0.4) if soft else rng.uniform(0.06, 0.16),
        color=rng.choice(palette[2:]),
        alpha=rng.randint(110, 190) if soft else rng.randint(70, 140),
        orbit=rng.uniform(0.04, 0.15),
        phase=rng.uniform(0, math.tau),
        spin=rng.choice([-1, 1]) * rng.uniform(0.1, 0.5),
        soft=soft,
    )


def draw_frame(scene: Scene, size: Size, phase: float, sketch_side: int) -> Image.Image:
    """Draw the scene at `phase` (0 to 1 over a loop) and scale it to `size`."""
    sketch_size = _sketch_size(size, sketch_side)
    canvas = _gradient(scene, sketch_size, phase)
    long_side = max(sketch_size)
    _draw_shapes(canvas, [s for s in scene.shapes if s.soft], phase)
    canvas = canvas.filter(ImageFilter.GaussianBlur(long_side / 14))
    _draw_shapes(canvas, [s for s in scene.shapes if not s.soft], phase)
    # ImageDraw does not anti-alias, so a light blur smooths the shape edges.
    canvas = canvas.filter(ImageFilter.GaussianBlur(max(1.0, long_side / 300)))
    if canvas.size == size:
        return canvas
    return canvas.resize(size, Image.Resampling.BICUBIC)


def _sketch_size(size: Size, sketch_side: int) -> Size:
    width, height = size
    scale = min(1.0, sketch_side / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def _gradient(scene: Scene, size: Size, phase: float) -> Image.Image:
    """Blend the two background colors along the scene angle, which sways with phase."""
    width, height = size
    diagonal = math.ceil(math.hypot(width, height))
    ramp = Image.linear_gradient("L").resize(
        (diagonal, diagonal), Image.Resampling.BILINEAR
    )
    angle = scene.angle + 25 * math.sin(math.tau * phase)
    ramp = ramp.rotate(angle, resample=Image.Resampling.BILINEAR)
    left, top = (diagonal - width) // 2, (diagonal - height) // 2
    mask = ramp.crop((left, top, left + width, top + height))
    top_layer = Image.new("RGB", size, scene.top)
    bottom_layer = Image.new("RGB", size, scene.bottom)
    return Image.composite(bottom_layer, top_layer, mask)


def _draw_shapes(canvas: Image.Image, shapes: list[Shape], phase: float) -> None:
    draw = ImageDraw.Draw(canvas, "RGBA")
    width, height = canvas.size
    unit = min(width, height)
    for shape in shapes:
        turn = math.tau * phase + shape.phase
        x = (shape.x + shape.orbit * math.cos(turn)) * width
        y = (shape.y + shape.orbit * math.sin(turn)) * height
        radius = shape.radius * unit
        fill = (*shape.color, shape.alpha)
        if shape.sides == 0:
            draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=fill)
        else:
            rotation = math.degrees(shape.phase + math.tau * shape.spin * phase)
            draw.regular_polygon(
                (x, y, radius), shape.sides, rotation=rotation, fill=fill
            )


def render_video(
    prompt: str, seed: int, size: Size, seconds: float, progress: ProgressCallback
) -> ResultFile:
    """Render an H.264 MP4 whose shapes complete one loop over the clip."""
    scene = build_scene(prompt, seed)
    frame_count = max(1, round(seconds * FRAME_RATE))
    batch = FRAME_RATE // 2
    pacer = Pacer(progress, math.ceil(frame_count / batch) + 1)
    buffer = io.BytesIO()
    with _open_mp4(buffer) as container:
        stream = _add_h264_stream(container, size)
        for index in range(frame_count):
            image = draw_frame(scene, size, index / frame_count, VIDEO_SKETCH_SIDE)
            frame = av.VideoFrame.from_image(image)
            frame.pts = index
            container.mux(stream.encode(frame))
            if (index + 1) % batch == 0 or index + 1 == frame_count:
                pacer.report(min(95, _percent(index + 1, frame_count)))
        container.mux(stream.encode(None))
    pacer.report(100)
    return ResultFile(content=buffer.getvalue(), mime_type="video/mp4")


def _open_mp4(buffer: io.BytesIO) -> av.container.OutputContainer:
    """Open an MP4 muxer that moves the index (moov) in front of the media on close.

    For faststart, FFmpeg (shift_data in libavformat/movenc.c) flushes the output and
    reopens it by URL to read back the media data it must move. This output has no
    URL, so `io_open` returns a snapshot of the buffer, which then contains every
    byte that FFmpeg reads back.
    """
    return av.open(
        buffer,
        "w",
        format="mp4",
        options={"movflags": "+faststart"},
        io_open=lambda url, flags, options: io.BytesIO(buffer.getvalue()),
    )


def _add_h264_stream(
    container: av.container.OutputContainer, size: Size
) -> av.VideoStream:
    stream = container.add_stream("libx264", rate=FRAME_RATE)
    stream.width, stream.height = size
    stream.pix_fmt = "yuv420p"
    stream.options = dict(X264_OPTIONS)
    return stream
