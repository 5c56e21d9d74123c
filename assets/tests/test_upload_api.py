"""POST /api/assets: images uploaded to a user's library, e.g. as references."""

import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from assets.models import Asset
from providers.models import ModelSpec
from providers.tests.fakes.media import mp4_bytes

pytestmark = pytest.mark.django_db


def png_upload(name: str = "ref.png", size: tuple[int, int] = (64, 48)):
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 80, 40)).save(buffer, "PNG")
    return SimpleUploadedFile(name, buffer.getvalue(), content_type="image/png")


def upload(client, file):
    return client.post("/api/assets", {"file": file}, format="multipart")


def test_upload_creates_owned_image(owner_client, owner):
    response = upload(owner_client, png_upload())

    assert response.status_code == 201
    asset = Asset.objects.get(pk=response.json()["id"])
    assert asset.owner == owner
    assert asset.kind == "image"
    assert asset.source_job is None
    assert (asset.width, asset.height) == (64, 48)
    assert response.json()["thumbnail_url"]


def test_upload_invisible_to_stranger(owner_client, stranger_client):
    asset_id = upload(owner_client, png_upload()).json()["id"]

    response = stranger_client.get(f"/api/assets/{asset_id}")

    assert response.status_code == 404


def test_upload_visible_to_staff(owner_client, staff_client):
    asset_id = upload(owner_client, png_upload()).json()["id"]

    response = staff_client.get(f"/api/assets/{asset_id}")

    assert response.status_code == 200


def test_upload_anonymous_unauthorized(anonymous_client):
    response = upload(anonymous_client, png_upload())

    assert response.status_code == 401
    assert not Asset.objects.exists()


def test_upload_rejects_html_named_png(owner_client):
    page = SimpleUploadedFile("x.png", b"<html>nope</html>", content_type="image/png")

    response = upload(owner_client, page)

    assert response.status_code == 400
    assert response.json()["file"][0]["code"] == "invalid"
    assert not Asset.objects.exists()


def test_upload_rejects_oversized(owner_client, settings):
    settings.MAX_UPLOAD_BYTES = 100

    response = upload(owner_client, png_upload(size=(256, 256)))

    assert response.status_code == 400
    assert "larger than" in response.json()["file"][0]["message"]


def test_upload_requires_file(owner_client):
    response = owner_client.post("/api/assets", {}, format="multipart")

    assert response.status_code == 400
    assert response.json()["file"][0]["code"] == "required"


def test_upload_usable_as_reference(owner_client, catalog):
    ModelSpec.objects.filter(name="local-image").update(supports=["reference_asset"])
    asset_id = upload(owner_client, png_upload()).json()["id"]

    response = owner_client.post(
        "/api/jobs",
        {
            "model": "local-image",
            "prompt": "remix",
            "params": {"size": "512x512", "reference_asset": asset_id},
        },
        format="json",
    )

    assert response.status_code == 201
    assert response.json()["params"]["reference_asset"] == asset_id


def test_upload_never_decodes_video(owner_client, monkeypatch):
    def fail_video_probe(content):
        raise AssertionError("an image upload reached the video decoder")

    monkeypatch.setattr("assets.media._probe_video", fail_video_probe)
    video = SimpleUploadedFile("clip.png", mp4_bytes(), content_type="image/png")

    response = upload(owner_client, video)

    assert response.status_code == 400
    assert response.json()["file"][0]["message"].startswith("Upload an image")
