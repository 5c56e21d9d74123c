"""Inspect uploaded or generated media, and derive WebP previews from it.

Every function works on bytes in memory and writes no files.
"""

import io
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import av
from django.utils.translation import gettext
from PIL import Image, ImageOps

# Pillow 13 warns above about 89 megapixels and raises above twice that. This stricter
# cap rejects decompression bombs once the header is read, before pixels are decoded.
MAX_PIXELS = 50_000_000
PREVIEW_QUALITY = 80

# Pillow plugins allowed to open uploads. Other formats are never parsed.
IMAGE_FORMATS = ["PNG", "JPEG", "WEBP", "GIF"]
# Pillow format name to (MIME type, file extension with its leading dot).
IMAGE_TYPES = {
    "PNG": ("image/png", ".png"),
    "JPEG": ("image/jpeg", ".jpg"),
    "WEBP": ("image/webp", ".webp"),
    "GIF": ("image/gif", ".gif"),
    # The JPEG plugin reports multi-picture JPEGs, common from cameras, as "MPO".
    "MPO": ("image/jpeg", ".jpg"),
}
# FFmpeg's "mp4" demuxer also reads MOV, and its "matroska" demuxer also reads WebM.
# Forcing the demuxer means FFmpeg never probes an upload as a playlist format such
# as HLS or concat, which open further files or URLs.
VIDEO_DEMUXERS = ("mp4", "matroska")
WEBM_VIDEO_CODECS = {"vp8", "vp9", "av1"}
SUPPORTED_TYPES = "PNG, JPEG, WebP, GIF, MP4, MOV or WebM"
SUPPORTED_VIDEO_TYPES = "MP4, MOV or WebM"

# Exceptions that Pillow raises for malformed input. A bad PNG checksum, for example,
# raises SyntaxError.
PILLOW_ERRORS = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    struct.error,
    Image.DecompressionBombError,
)


class InvalidMedia(ValueError):
    """Error for bytes that are not a supported, intact image or video."""


@dataclass(frozen=True)
class MediaInfo:
    """Type and dimensions decoded from the bytes, with duration in seconds."""

    kind: Literal["image", "video"]
    mime_type: str
    width: int
    height: int
    duration: float | None
    extension: str  # with the leading dot, for example ".png"


def probe(
    content: bytes,
    declared_mime: str | None = None,
    kinds: tuple[str, ...] = ("image", "video"),
) -> MediaInfo:
    """Decode `content` and describe it, or raise InvalidMedia.

    The type comes from the bytes alone. `declared_mime` only decides whether to try
    the video decoder first, which saves a failed image parse for videos. Only the
    decoders of `kinds` run, so an image upload never reaches FFmpeg.
    """
    if not content:
        raise InvalidMedia(gettext("The file is empty."))
    probers = {"image": _probe_image, "video": _probe_video}
    order = (
        ["video", "image"]
        if (declared_mime or "").startswith("video/")
        else [
            "image",
            "video",
        ]
    )
    info = None
    for kind in order:
        if kind in kinds and info is None:
            info = probers[kind](content)
    if info is None:
        raise InvalidMedia(
            gettext("The file is not a supported %(types)s file.")
            % {"types": SUPPORTED_TYPES}
        )
    return info


def make_thumbnail(content: bytes, max_side: int = 512) -> bytes:
    """Encode a WebP preview of an image, scaled down to at most `max_side` pixels."""
    _check_max_side(max_side)
    try:
        with (
            _image_errors(gettext("The image is damaged or truncated.")),
            _open_image(content) as image,
        ):
            image.draft("RGB", (max_side, max_side))
            preview = _to_preview_mode(ImageOps.exif_transpose(image))
    except Image.UnidentifiedImageError as error:
        raise InvalidMedia(
            gettext("The file is not a PNG, JPEG, WebP or GIF image.")
        ) from error
    return _encode_webp(preview, max_side)


def make_poster(content: bytes, max_side: int = 512) -> bytes:
    """Decode the first video frame into a WebP preview of at most `max_side` pixels."""
    _check_max_side(max_side)
    with _open_video(content) as container:
        _video_stream(container)
        frame = _first_frame(container)
        image = frame.to_image()
        if frame.rotation:
            image = image.rotate(frame.rotation, expand=True)
    return _encode_webp(image, max_side)


def _check_max_side(max_side: int) -> None:
    if max_side < 1:
        raise ValueError(f"max_side must be at least 1, got {max_side}.")


def _probe_image(content: bytes) -> MediaInfo | None:
    """Describe an image, or return None if Pillow does not recognize the bytes."""
    try:
        with _image_errors(gettext("The image is damaged or truncated.")):
            with _open_image(content) as image:
                image.verify()
            # verify() leaves the image unusable, so decoding needs a fresh open.
            with _open_image(content) as image:
                image.load()
                mime_type, extension = IMAGE_TYPES[image.format]
                width, height = image.size
    except Image.UnidentifiedImageError:
        return None
    return MediaInfo("image", mime_type, width, height, None, extension)


@contextmanager
def _image_errors(message: str) -> Iterator[None]:
    """Turn Pillow decoding errors into InvalidMedia(message).

    UnidentifiedImageError passes through, so callers can try other decoders.
    """
    try:
        yield
    except (InvalidMedia, Image.UnidentifiedImageError):
        raise
    except Image.DecompressionBombError as error:
        raise InvalidMedia(_too_large("image")) from error
    except PILLOW_ERRORS as error:
        raise InvalidMedia(message) from error


def _too_large(kind: str, width: int | None = None, height: int | None = None) -> str:
    size = f" ({width}x{height})" if width and height else ""
    limit = MAX_PIXELS // 1_000_000
    if kind == "video":
        message = gettext(
            "The video%(size)s is above the limit of %(limit)s megapixels. "
            "Upload a smaller video."
        )
    else:
        message = gettext(
            "The image%(size)s is above the limit of %(limit)s megapixels. "
            "Upload a smaller image."
        )
    return message % {"size": size, "limit": limit}


@contextmanager
def _open_image(content: bytes) -> Iterator[Image.Image]:
    """Open an image of an allowed format and reject it if it exceeds MAX_PIXELS."""
    with Image.open(io.BytesIO(content), formats=IMAGE_FORMATS) as image:
        width, height = image.size
        if width * height > MAX_PIXELS:
            raise InvalidMedia(_too_large("image", width, height))
        yield image


def _to_preview_mode(image: Image.Image) -> Image.Image:
    """Convert to RGB, or RGBA when the image has transparency."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # Pillow clips these 16-bit samples to 255 when converting, so scale first.
        image = image.convert("I").point(lambda value: value / 256).convert("L")
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        return image.convert("RGBA")
    return image.convert("RGB")


def _encode_webp(image: Image.Image, max_side: int) -> bytes:
    image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="WEBP", quality=PREVIEW_QUALITY)
    return buffer.getvalue()


def _probe_video(content: bytes) -> MediaInfo | None:
    """Describe a video, or return None if it is not in an MP4, MOV or WebM file."""
    opened = _open_container(content)
    if opened is None:
        return None
    container, demuxer = opened
    with container:
        stream = _video_stream(container)
        mime_type, extension = _video_type(container, demuxer, stream)
        if demuxer == "mp4":
            _check_samples_present(stream, len(content))
        frame = _first_frame(container)
        width, height = frame.width, frame.height
        if frame.rotation in (90, -90):
            width, height = height, width
        duration = _duration_seconds(container, stream)
    return MediaInfo("video", mime_type, width, height, duration, extension)


def _open_container(content: bytes) -> tuple[av.container.InputContainer, str] | None:
    """Open the bytes with the first demuxer in VIDEO_DEMUXERS that accepts them."""
    for demuxer in VIDEO_DEMUXERS:
        try:
            return av.open(io.BytesIO(content), "r", format=demuxer), demuxer
        except (av.FFmpegError, ValueError):
            continue
    return None


@contextmanager
def _open_video(content: bytes) -> Iterator[av.container.InputContainer]:
    opened = _open_container(content)
    if opened is None:
        raise InvalidMedia(
            gettext("The file is not an %(types)s video.")
            % {"types": SUPPORTED_VIDEO_TYPES}
        )
    with opened[0] as container:
        yield container


def _video_stream(container: av.container.InputContainer) -> av.VideoStream:
    if not container.streams.video:
        raise InvalidMedia(gettext("The file contains no video stream."))
    stream = container.streams.video[0]
    if stream.width * stream.height > MAX_PIXELS:
        raise InvalidMedia(_too_large("video", stream.width, stream.height))
    return stream


def _video_type(
    container: av.container.InputContainer, demuxer: str, stream: av.VideoStream
) -> tuple[str, str]:
    """Map the container to (MIME type, extension), rejecting non-WebM Matroska."""
    if demuxer == "mp4":
        # QuickTime files declare the brand "qt  ", and MP4 files an ISO brand.
        if container.metadata.get("major_brand", "").strip() == "qt":
            return "video/quicktime", ".mov"
        return "video/mp4", ".mp4"
    if stream.codec_context.name not in WEBM_VIDEO_CODECS:
        raise InvalidMedia(
            gettext(
                "Matroska video with %(codec)s is not supported. "
                "Upload MP4, MOV or WebM (VP8, VP9 or AV1)."
            )
            % {"codec": stream.codec_context.name}
        )
    return "video/webm", ".webm"


def _check_samples_present(stream: av.VideoStream, content_length: int) -> None:
    """Raise InvalidMedia if the MP4 index points past the end of the bytes.

    A faststart MP4 cut short keeps its index and still decodes its first frames, so
    decoding alone does not catch it.
    """
    # NOTE: Matroska indexes (cues) list only some frames, so a truncated WebM
    # passes as long as its first frame decodes.
    end = max((entry.pos + entry.size for entry in stream.index_entries), default=0)
    if end > content_length:
        raise InvalidMedia(gettext("The video is truncated. Upload the complete file."))


def _first_frame(container: av.container.InputContainer) -> av.VideoFrame:
    try:
        for frame in container.decode(video=0):
            return frame
    except (av.FFmpegError, ValueError) as error:
        raise InvalidMedia(
            gettext("The video is damaged or uses an unsupported codec.")
        ) from error
    raise InvalidMedia(gettext("The video contains no decodable frame."))


def _duration_seconds(
    container: av.container.InputContainer, stream: av.VideoStream
) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return None
