"""Hostile files sent to POST /api/assets and to the generator page's upload."""

import io
import struct
import time
import zlib

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from PIL import Image

from assets.models import Asset, Blob
from assets.tests.test_assets_api import make_asset, media_path, noise_png
from generation.models import Job
from generation.tests.factories import body_of
from providers.models import ModelSpec, Provider
from providers.tests.fakes.media import mp4_bytes

pytestmark = pytest.mark.django_db


def upload(client, name: str, content: bytes, content_type: str = "image/png"):
    file = SimpleUploadedFile(name, content, content_type=content_type)
    return client.post("/api/assets", {"file": file}, format="multipart")


def png_chunk(kind: bytes, data: bytes) -> bytes:
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))


def bomb_png(width: int, height: int) -> bytes:
    """A small PNG whose header claims width x height pixels of 8-bit grey."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    rows = zlib.compress(b"\x00" * 4096, 9)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", rows)
        + png_chunk(b"IEND", b"")
    )


def gif_bytes(frames: int = 3) -> bytes:
    images = [Image.new("P", (32, 32), color=i) for i in range(frames)]
    buffer = io.BytesIO()
    images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:])
    return buffer.getvalue()


SVG = (
    b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" '
    b'onload="alert(document.cookie)"><script>alert(1)</script></svg>'
)
HTML = b"<!doctype html><html><script>alert(document.cookie)</script></html>"


@pytest.mark.parametrize(
    ("name", "content", "content_type"),
    [
        ("page.png", HTML, "image/png"),
        ("logo.svg", SVG, "image/svg+xml"),
        ("logo.png", SVG, "image/png"),
        ("notes.txt", b"plain text", "text/plain"),
        ("empty.png", b"", "image/png"),
        ("cut.png", noise_png("cut")[:200], "image/png"),
        ("bomb.png", bomb_png(60_000, 60_000), "image/png"),
        ("wide.png", bomb_png(2**31 - 1, 1), "image/png"),
        ("tiff.png", b"II*\x00" + b"\x00" * 64, "image/png"),
    ],
)
def test_hostile_upload_rejected(owner, owner_client, name, content, content_type):
    started = time.monotonic()
    response = upload(owner_client, name, content, content_type)

    assert response.status_code == 400
    assert response.data["file"][0]["code"] == "invalid"
    assert not Asset.objects.filter(owner=owner).exists()
    assert not Blob.objects.exists()
    assert time.monotonic() - started < 5


def test_video_upload_rejected(owner, owner_client):
    response = upload(owner_client, "clip.png", mp4_bytes(), "image/png")

    assert response.status_code == 400
    assert not Asset.objects.filter(owner=owner).exists()


def test_oversized_upload_rejected(owner, owner_client, settings):
    content = noise_png("big")
    settings.MAX_UPLOAD_BYTES = len(content) - 1

    response = upload(owner_client, "big.png", content)

    assert response.status_code == 400
    assert not Asset.objects.filter(owner=owner).exists()


def test_gif_upload_served_as_gif(owner, owner_client):
    response = upload(owner_client, "anim.gif", gif_bytes(), "image/gif")
    asset = Asset.objects.get(owner=owner)
    served = owner_client.get(media_path(asset))

    assert response.status_code == 201
    assert asset.mime_type == "image/gif"
    assert served["Content-Type"] == "image/gif"
    assert served["X-Content-Type-Options"] == "nosniff"


def test_declared_type_ignored(owner, owner_client):
    response = upload(owner_client, "x.html", noise_png("typed"), "text/html")
    asset = Asset.objects.get(owner=owner)
    served = owner_client.get(media_path(asset))

    assert response.status_code == 201
    assert served["Content-Type"] == "image/png"
    assert b"<" not in body_of(served)[:8]


def test_upload_needs_login(anonymous_client):
    assert upload(anonymous_client, "a.png", noise_png("anon")).status_code == 401


def test_upload_lands_in_own_library(owner, stranger, stranger_client, owner_client):
    response = upload(stranger_client, "mine.png", noise_png("theirs"))

    assert response.status_code == 201
    assert Asset.objects.get(pk=response.data["id"]).owner == stranger
    assert owner_client.get(f"/api/assets/{response.data['id']}").status_code == 404


def test_same_bytes_other_user_no_leak(owner, stranger, stranger_client, owner_client):
    # Blobs are shared by sha256; the stranger's copy must not open the owner's.
    original = make_asset(owner, "shared")
    response = upload(stranger_client, "copy.png", noise_png("shared"))

    assert response.status_code == 201
    assert response.data["sha256"] == original.blob_id
    assert stranger_client.get(media_path(original)).status_code == 404
    assert stranger_client.get(f"/api/assets/{original.pk}").status_code == 404


def test_page_reference_upload_hostile(catalog, owner):
    Provider.objects.filter(name="openai").update(enabled=True)
    ModelSpec.objects.filter(name="gpt-image-1").update(price=0)
    client = Client()
    client.force_login(owner)
    file = SimpleUploadedFile("x.png", bomb_png(60_000, 60_000), "image/png")
    data = {"model": "gpt-image-1", "prompt": "edit", "reference_file": file}

    response = client.post("/", data)

    assert response.status_code == 400
    assert not Asset.objects.filter(owner=owner).exists()
    assert not Job.objects.filter(owner=owner).exists()
