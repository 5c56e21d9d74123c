import io
import struct
import zlib

import av
import pytest
from PIL import Image

from assets import media
from assets.media import InvalidMedia, make_poster, make_thumbnail, probe


def encode_image(image: Image.Image, image_format: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=image_format)
    return buffer.getvalue()


def gradient_image(size: tuple[int, int]) -> Image.Image:
    ramp = Image.linear_gradient("L").resize(size)
    flipped = ramp.transpose(Image.Transpose.FLIP_TOP_BOTTOM)
    return Image.merge("RGB", (ramp, flipped, ramp))


def encode_video(
    size: tuple[int, int],
    frame_count: int,
    rate: int = 10,
    container_format: str = "mp4",
    codec: str = "libx264",
    rotation: int = 0,
    faststart: bool = False,
) -> bytes:
    buffer = io.BytesIO()
    options = {"movflags": "+faststart"} if faststart else {}
    with av.open(
        buffer,
        "w",
        format=container_format,
        options=options,
        # The faststart pass reads the output back, here from a snapshot of the buffer.
        io_open=lambda url, flags, io_options: io.BytesIO(buffer.getvalue()),
    ) as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        if rotation:
            stream.set_display_rotation(rotation)
        for index in range(frame_count):
            image = Image.new("RGB", size, (index * 20 % 256, 90, 160))
            image.paste((250, 250, 250), (0, 0, size[0] // 2, size[1] // 4))
            frame = av.VideoFrame.from_image(image)
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return buffer.getvalue()


def encode_audio_only_mp4() -> bytes:
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        stream = container.add_stream("aac", rate=44100)
        frame = av.AudioFrame(format="fltp", layout="mono", samples=1024)
        for plane in frame.planes:
            plane.update(bytes(plane.buffer_size))
        frame.sample_rate = 44100
        frame.pts = 0
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return buffer.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """Build a PNG whose header declares the size but whose pixel data is empty."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data)
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"")
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", idat)
        + chunk(b"IEND", b"")
    )


def webp_size(content: bytes) -> tuple[str | None, tuple[int, int]]:
    with Image.open(io.BytesIO(content)) as image:
        return image.format, image.size


@pytest.fixture(scope="module")
def png_bytes() -> bytes:
    return encode_image(gradient_image((120, 80)), "PNG")


@pytest.fixture(scope="module")
def mp4_bytes() -> bytes:
    return encode_video((64, 48), frame_count=20, rate=10)


def test_probe_png(png_bytes: bytes) -> None:
    info = probe(png_bytes)
    assert info.kind == "image"
    assert info.mime_type == "image/png"
    assert info.extension == ".png"
    assert (info.width, info.height) == (120, 80)
    assert info.duration is None


def test_probe_jpeg() -> None:
    info = probe(encode_image(gradient_image((90, 60)), "JPEG"))
    assert info.mime_type == "image/jpeg"
    assert info.extension == ".jpg"
    assert (info.width, info.height) == (90, 60)


def test_probe_multi_picture_jpeg() -> None:
    buffer = io.BytesIO()
    left, right = gradient_image((40, 30)), gradient_image((40, 30))
    left.save(buffer, format="MPO", save_all=True, append_images=[right])
    info = probe(buffer.getvalue())
    assert info.mime_type == "image/jpeg"
    assert info.extension == ".jpg"


@pytest.mark.parametrize(
    ("image_format", "mime_type"), [("WEBP", "image/webp"), ("GIF", "image/gif")]
)
def test_probe_webp_and_gif(image_format: str, mime_type: str) -> None:
    info = probe(encode_image(gradient_image((30, 20)), image_format))
    assert info.kind == "image"
    assert info.mime_type == mime_type
    assert (info.width, info.height) == (30, 20)


def test_probe_mp4(mp4_bytes: bytes) -> None:
    info = probe(mp4_bytes)
    assert info.kind == "video"
    assert info.mime_type == "video/mp4"
    assert info.extension == ".mp4"
    assert (info.width, info.height) == (64, 48)
    assert info.duration == pytest.approx(2.0, abs=0.05)


def test_probe_mov() -> None:
    info = probe(encode_video((32, 32), frame_count=5, container_format="mov"))
    assert info.mime_type == "video/quicktime"
    assert info.extension == ".mov"


def test_probe_webm() -> None:
    content = encode_video((32, 24), 10, container_format="webm", codec="libvpx")
    info = probe(content)
    assert info.mime_type == "video/webm"
    assert info.extension == ".webm"
    assert (info.width, info.height) == (32, 24)
    assert info.duration == pytest.approx(1.0, abs=0.05)


def test_probe_mkv_with_h264_rejected() -> None:
    content = encode_video((32, 24), 5, container_format="matroska")
    with pytest.raises(InvalidMedia, match="h264"):
        probe(content)


def test_probe_rotated_video_swaps_sides() -> None:
    info = probe(encode_video((64, 32), frame_count=3, rotation=-90))
    assert (info.width, info.height) == (32, 64)


def test_probe_ignores_declared_mime(png_bytes: bytes, mp4_bytes: bytes) -> None:
    assert probe(png_bytes, "video/mp4").mime_type == "image/png"
    assert probe(mp4_bytes, "image/png").mime_type == "video/mp4"
    assert probe(mp4_bytes, "video/webm").mime_type == "video/mp4"


def test_probe_rejects_html() -> None:
    page = b"<!doctype html><html><head><title>Hi</title></head><body></body></html>"
    with pytest.raises(InvalidMedia, match="not a supported"):
        probe(page, "image/png")


@pytest.mark.parametrize("content", [b"", b"GIF89a", b"\x00" * 64, b"%PDF-1.7\n"])
def test_probe_rejects_non_media(content: bytes) -> None:
    with pytest.raises(InvalidMedia):
        probe(content)


def test_probe_rejects_truncated_png(png_bytes: bytes) -> None:
    with pytest.raises(InvalidMedia, match="damaged or truncated"):
        probe(png_bytes[: len(png_bytes) // 2])


def test_probe_rejects_bad_png_checksum(png_bytes: bytes) -> None:
    damaged = bytearray(png_bytes)
    damaged[damaged.find(b"IDAT") + 6] ^= 0xFF
    with pytest.raises(InvalidMedia, match="damaged or truncated"):
        probe(bytes(damaged))


def test_probe_rejects_truncated_jpeg() -> None:
    jpeg = encode_image(gradient_image((200, 200)), "JPEG")
    with pytest.raises(InvalidMedia, match="damaged or truncated"):
        probe(jpeg[: len(jpeg) // 2])


def test_probe_rejects_truncated_mp4(mp4_bytes: bytes) -> None:
    with pytest.raises(InvalidMedia):
        probe(mp4_bytes[: len(mp4_bytes) // 2])


def test_probe_rejects_truncated_faststart_mp4() -> None:
    faststart = encode_video((64, 48), frame_count=20, faststart=True)
    assert faststart.find(b"moov") < faststart.find(b"mdat")
    with pytest.raises(InvalidMedia, match="truncated"):
        probe(faststart[: len(faststart) * 3 // 4])


def test_probe_rejects_audio_only_mp4() -> None:
    with pytest.raises(InvalidMedia, match="no video stream"):
        probe(encode_audio_only_mp4())


def test_probe_rejects_decompression_bomb() -> None:
    with pytest.raises(InvalidMedia, match="megapixels"):
        probe(png_header_only(10_000, 6_000))


def test_probe_rejects_svg() -> None:
    svg = b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>'
    with pytest.raises(InvalidMedia):
        probe(svg, "image/svg+xml")


def test_invalid_media_is_value_error() -> None:
    assert issubclass(InvalidMedia, ValueError)


def test_thumbnail_webp_within_max_side() -> None:
    thumbnail = make_thumbnail(encode_image(gradient_image((800, 400)), "PNG"), 128)
    image_format, size = webp_size(thumbnail)
    assert image_format == "WEBP"
    assert size == (128, 64)


def test_thumbnail_portrait_within_max_side() -> None:
    jpeg = encode_image(gradient_image((300, 900)), "JPEG")
    assert webp_size(make_thumbnail(jpeg))[1] == (171, 512)


def test_thumbnail_small_image_not_enlarged(png_bytes: bytes) -> None:
    assert webp_size(make_thumbnail(png_bytes))[1] == (120, 80)


def test_thumbnail_keeps_transparency() -> None:
    image = Image.new("P", (40, 40), 0)
    image.putpalette([255, 0, 0, 0, 0, 255])
    image.paste(1, (0, 0, 20, 40))
    image.info["transparency"] = 0
    with Image.open(io.BytesIO(make_thumbnail(encode_image(image, "PNG")))) as thumb:
        assert thumb.mode == "RGBA"
        assert thumb.getpixel((30, 20))[3] == 0
        assert thumb.getpixel((5, 20))[3] == 255


def test_thumbnail_scales_16_bit_grayscale() -> None:
    image = Image.new("I;16", (16, 16), 32768)
    with Image.open(io.BytesIO(make_thumbnail(encode_image(image, "PNG")))) as thumb:
        gray = thumb.convert("L").getpixel((8, 8))
    assert 110 < gray < 145


def test_thumbnail_applies_exif_rotation() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display.
    buffer = io.BytesIO()
    gradient_image((80, 40)).save(buffer, format="JPEG", exif=exif)
    assert webp_size(make_thumbnail(buffer.getvalue()))[1] == (40, 80)


def test_thumbnail_rejects_html() -> None:
    with pytest.raises(InvalidMedia):
        make_thumbnail(b"<html><body>not an image</body></html>")


def test_thumbnail_rejects_truncated_png(png_bytes: bytes) -> None:
    with pytest.raises(InvalidMedia):
        make_thumbnail(png_bytes[:60])


def test_thumbnail_rejects_zero_max_side(png_bytes: bytes) -> None:
    with pytest.raises(ValueError, match="max_side"):
        make_thumbnail(png_bytes, 0)


def test_poster_webp_within_max_side(mp4_bytes: bytes) -> None:
    poster = make_poster(mp4_bytes, 32)
    image_format, size = webp_size(poster)
    assert image_format == "WEBP"
    assert size == (32, 24)


def test_poster_shows_first_frame(mp4_bytes: bytes) -> None:
    with Image.open(io.BytesIO(make_poster(mp4_bytes))) as poster:
        red, green, blue = poster.convert("RGB").getpixel((40, 40))
    # The first frame is (0, 90, 160) below its white top-left band.
    assert red < 30
    assert 70 < green < 110
    assert 140 < blue < 180


def test_poster_applies_rotation() -> None:
    rotated = encode_video((64, 32), frame_count=3, rotation=-90)
    assert webp_size(make_poster(rotated))[1] == (32, 64)


def test_poster_rejects_png(png_bytes: bytes) -> None:
    with pytest.raises(InvalidMedia):
        make_poster(png_bytes)


def test_poster_rejects_audio_only_mp4() -> None:
    with pytest.raises(InvalidMedia, match="no video stream"):
        make_poster(encode_audio_only_mp4())


def test_probe_limit_applies_to_videos(
    monkeypatch: pytest.MonkeyPatch, mp4_bytes: bytes
) -> None:
    monkeypatch.setattr(media, "MAX_PIXELS", 1000)
    with pytest.raises(InvalidMedia, match="megapixels"):
        probe(mp4_bytes)
