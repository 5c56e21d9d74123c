import hashlib
import io
import time
import types
from pathlib import Path

import pytest
from PIL import Image

from assets.links import signed_path
from assets.models import Asset, Blob
from assets.services import create_asset, prepare_file
from generation.tests.factories import body_of, fetch

SIZE = (64, 48)


def noise_png(seed: str) -> bytes:
    """Encode a PNG of deterministic noise, large enough for range requests."""
    pixels = hashlib.shake_256(seed.encode()).digest(SIZE[0] * SIZE[1] * 3)
    buffer = io.BytesIO()
    Image.frombytes("RGB", SIZE, pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def make_asset(owner, seed: str = "first") -> Asset:
    content = noise_png(seed)
    info, preview = prepare_file(content, "image/png")
    return create_asset(
        owner, content, info, preview, model_name="local-image", prompt=seed
    )


def media_path(asset: Asset, variant: str = "file") -> str:
    return f"/media/assets/{asset.pk}/{variant}"


def stored_path(blob: Blob) -> Path:
    return Path(blob.file.path)


def stored_bytes(asset: Asset) -> bytes:
    with asset.blob.file.open("rb") as handle:
        return handle.read()


def listed_ids(response) -> set[str]:
    return {asset["id"] for asset in response.data["results"]}


@pytest.fixture
def asset(owner) -> Asset:
    return make_asset(owner)


@pytest.fixture
def content(asset) -> bytes:
    return noise_png("first")


# List and detail


def test_list_shows_own_assets(owner_client, asset) -> None:
    response = owner_client.get("/api/assets")

    assert response.status_code == 200
    assert response.data["count"] == 1
    assert listed_ids(response) == {str(asset.pk)}


def test_list_hides_others_assets(stranger_client, stranger, asset) -> None:
    mine = make_asset(stranger, "stranger")

    response = stranger_client.get("/api/assets")

    assert response.status_code == 200
    assert listed_ids(response) == {str(mine.pk)}


def test_list_shows_staff_all_assets(staff_client, asset) -> None:
    response = staff_client.get("/api/assets")

    assert response.status_code == 200
    assert str(asset.pk) in listed_ids(response)


def test_list_rejects_anonymous(anonymous_client, asset) -> None:
    response = anonymous_client.get("/api/assets")

    assert response.status_code == 401
    assert response.data["code"] == "not_authenticated"


def test_list_queries_fixed(owner, owner_client, django_assert_num_queries) -> None:
    # The user (JWT), the page count and the assets.
    for index in range(3):
        make_asset(owner, f"few-{index}")
    with django_assert_num_queries(3):
        assert owner_client.get("/api/assets").data["count"] == 3

    for index in range(7):
        make_asset(owner, f"more-{index}")
    with django_assert_num_queries(3):
        assert owner_client.get("/api/assets").data["count"] == 10


def test_detail_shows_owner(owner_client, asset, content) -> None:
    response = owner_client.get(f"/api/assets/{asset.pk}")

    assert response.status_code == 200
    assert response.data["id"] == str(asset.pk)
    assert response.data["kind"] == "image"
    assert response.data["mime_type"] == "image/png"
    assert response.data["width"] == SIZE[0]
    assert response.data["height"] == SIZE[1]
    assert response.data["size_bytes"] == len(content)
    assert response.data["sha256"] == hashlib.sha256(content).hexdigest()
    assert response.data["model"] == "local-image"
    assert response.data["source_job"] is None


def test_detail_hides_from_stranger(stranger_client, asset) -> None:
    response = stranger_client.get(f"/api/assets/{asset.pk}")

    assert response.status_code == 404
    assert response.data["code"] == "not_found"


def test_detail_shows_staff(staff_client, asset) -> None:
    response = staff_client.get(f"/api/assets/{asset.pk}")

    assert response.status_code == 200
    assert response.data["id"] == str(asset.pk)


def test_detail_rejects_anonymous(anonymous_client, asset) -> None:
    response = anonymous_client.get(f"/api/assets/{asset.pk}")

    assert response.status_code == 401


def test_detail_links_are_signed(owner_client, anonymous_client, asset) -> None:
    data = owner_client.get(f"/api/assets/{asset.pk}").data

    assert data["url"].startswith(f"http://testserver{media_path(asset)}?token=")
    assert fetch(anonymous_client, data["url"]).status_code == 200
    assert fetch(anonymous_client, data["thumbnail_url"]).status_code == 200


# Media: who may fetch a file


def test_media_serves_owner(owner_client, asset, content) -> None:
    response = owner_client.get(media_path(asset))

    assert response.status_code == 200
    assert response["Content-Type"] == "image/png"
    assert response["Accept-Ranges"] == "bytes"
    assert body_of(response) == content


def test_thumbnail_serves_owner(owner_client, asset) -> None:
    response = owner_client.get(media_path(asset, "thumbnail"))

    assert response.status_code == 200
    assert response["Content-Type"] == "image/webp"
    with Image.open(io.BytesIO(body_of(response))) as thumbnail:
        assert thumbnail.format == "WEBP"


def test_media_serves_staff(staff_client, asset) -> None:
    response = staff_client.get(media_path(asset))

    assert response.status_code == 200


@pytest.mark.parametrize("variant", ["file", "thumbnail"])
def test_media_hides_from_stranger(stranger_client, asset, variant) -> None:
    response = stranger_client.get(media_path(asset, variant))

    assert response.status_code == 404


@pytest.mark.parametrize("variant", ["file", "thumbnail"])
def test_media_hides_from_anonymous(anonymous_client, asset, variant) -> None:
    response = anonymous_client.get(media_path(asset, variant))

    assert response.status_code == 404


BROWSER_ACCEPT = "text/html,application/xhtml+xml,*/*;q=0.8"


@pytest.mark.parametrize("exists", [True, False])
def test_media_sends_browser_to_login(anonymous_client, asset, exists) -> None:
    path = media_path(asset, "file")
    if not exists:
        path = path.replace(str(asset.pk), "00000000-0000-0000-0000-000000000000")

    response = anonymous_client.get(path + "?download=1", HTTP_ACCEPT=BROWSER_ACCEPT)

    assert response.status_code == 302
    assert response["Location"].startswith("/login?next=")
    assert "download%3D1" in response["Location"]


def test_media_login_then_download(client, owner, asset) -> None:
    path = media_path(asset, "file")
    login_url = client.get(path, HTTP_ACCEPT=BROWSER_ACCEPT)["Location"]
    client.force_login(owner)

    response = client.get(path, HTTP_ACCEPT=BROWSER_ACCEPT)

    assert login_url.startswith("/login?next=")
    assert response.status_code == 200


def test_media_browser_stranger_gets_404(stranger_client, asset) -> None:
    # A signed-in user who does not own the asset is not sent to log in again.
    response = stranger_client.get(
        media_path(asset, "file"), HTTP_ACCEPT=BROWSER_ACCEPT
    )

    assert response.status_code == 404


def test_media_image_tag_gets_404(anonymous_client, asset) -> None:
    response = anonymous_client.get(
        media_path(asset, "thumbnail"), HTTP_ACCEPT="image/avif,image/webp,*/*"
    )

    assert response.status_code == 404


@pytest.mark.parametrize("variant", ["file", "thumbnail"])
def test_signed_link_needs_no_login(anonymous_client, asset, variant) -> None:
    response = anonymous_client.get(signed_path(asset.pk, variant))

    assert response.status_code == 200


def test_signed_link_bound_to_asset(anonymous_client, owner, asset) -> None:
    other = make_asset(owner, "second")
    token = signed_path(other.pk, "file").partition("?")[2]

    response = anonymous_client.get(f"{media_path(asset)}?{token}")

    assert response.status_code == 404


def test_signed_link_bound_to_variant(anonymous_client, asset) -> None:
    token = signed_path(asset.pk, "thumbnail").partition("?")[2]

    response = anonymous_client.get(f"{media_path(asset)}?{token}")

    assert response.status_code == 404


def test_signed_link_rejects_garbled_token(anonymous_client, asset) -> None:
    response = anonymous_client.get(f"{media_path(asset)}?token=garbled")

    assert response.status_code == 404


def test_signed_link_expires(anonymous_client, asset, settings, monkeypatch) -> None:
    path = signed_path(asset.pk, "file")
    later = time.time() + settings.MEDIA_LINK_SECONDS + 5
    monkeypatch.setattr(
        "django.core.signing.time", types.SimpleNamespace(time=lambda: later)
    )

    response = anonymous_client.get(path)

    assert response.status_code == 404


def test_signed_link_valid_until_expiry(
    anonymous_client, asset, settings, monkeypatch
) -> None:
    path = signed_path(asset.pk, "file")
    later = time.time() + settings.MEDIA_LINK_SECONDS - 5
    monkeypatch.setattr(
        "django.core.signing.time", types.SimpleNamespace(time=lambda: later)
    )

    response = anonymous_client.get(path)

    assert response.status_code == 200


def test_media_unknown_variant(owner_client, asset) -> None:
    response = owner_client.get(media_path(asset, "original"))

    assert response.status_code == 404


def test_media_unknown_asset(owner_client, asset) -> None:
    response = owner_client.get(
        "/media/assets/00000000-0000-0000-0000-000000000000/file"
    )

    assert response.status_code == 404


# Media: ranges and downloads


def test_range_first_bytes(owner_client, asset, content) -> None:
    response = owner_client.get(media_path(asset), HTTP_RANGE="bytes=0-99")

    assert response.status_code == 206
    assert response["Content-Range"] == f"bytes 0-99/{len(content)}"
    assert response["Content-Length"] == "100"
    assert response["Content-Type"] == "image/png"
    assert body_of(response) == content[:100]


def test_range_middle_bytes(owner_client, asset, content) -> None:
    response = owner_client.get(media_path(asset), HTTP_RANGE="bytes=100-199")

    assert response.status_code == 206
    assert body_of(response) == content[100:200]


def test_range_suffix_bytes(owner_client, asset, content) -> None:
    size = len(content)

    response = owner_client.get(media_path(asset), HTTP_RANGE="bytes=-10")

    assert response.status_code == 206
    assert response["Content-Range"] == f"bytes {size - 10}-{size - 1}/{size}"
    assert body_of(response) == content[-10:]


def test_range_open_end(owner_client, asset, content) -> None:
    response = owner_client.get(media_path(asset), HTTP_RANGE="bytes=50-")

    assert response.status_code == 206
    assert body_of(response) == content[50:]


def test_range_end_clamped(owner_client, asset, content) -> None:
    size = len(content)

    response = owner_client.get(media_path(asset), HTTP_RANGE=f"bytes=10-{size * 2}")

    assert response.status_code == 206
    assert response["Content-Range"] == f"bytes 10-{size - 1}/{size}"
    assert body_of(response) == content[10:]


def test_range_suffix_longer_than_file(owner_client, asset, content) -> None:
    size = len(content)

    response = owner_client.get(media_path(asset), HTTP_RANGE=f"bytes=-{size * 2}")

    assert response.status_code == 206
    assert response["Content-Range"] == f"bytes 0-{size - 1}/{size}"
    assert body_of(response) == content


def test_range_several_serves_whole(owner_client, asset, content) -> None:
    response = owner_client.get(media_path(asset), HTTP_RANGE="bytes=0-9,20-29")

    assert response.status_code == 200
    assert body_of(response) == content


def test_range_start_past_end(owner_client, asset, content) -> None:
    size = len(content)

    response = owner_client.get(media_path(asset), HTTP_RANGE=f"bytes={size}-")

    assert response.status_code == 416
    assert response["Content-Range"] == f"bytes */{size}"


def test_range_with_signed_link(anonymous_client, asset, content) -> None:
    response = anonymous_client.get(
        signed_path(asset.pk, "file"), HTTP_RANGE="bytes=0-9"
    )

    assert response.status_code == 206
    assert body_of(response) == content[:10]


def test_range_still_checks_access(stranger_client, asset) -> None:
    response = stranger_client.get(media_path(asset), HTTP_RANGE="bytes=0-99")

    assert response.status_code == 404


def test_download_sets_attachment(owner_client, asset) -> None:
    response = owner_client.get(f"{media_path(asset)}?download=1")

    assert response.status_code == 200
    assert response["Content-Disposition"].startswith("attachment")
    assert f"lightsource-{asset.pk}.png" in response["Content-Disposition"]


def test_download_with_range(owner_client, asset) -> None:
    response = owner_client.get(
        f"{media_path(asset)}?download=1", HTTP_RANGE="bytes=0-99"
    )

    assert response.status_code == 206
    assert response["Content-Disposition"].startswith("attachment")


def test_media_inline_by_default(owner_client, asset) -> None:
    response = owner_client.get(media_path(asset))

    assert response["Content-Disposition"].startswith("inline")


# Deleting assets and their blobs


def test_delete_removes_unused_blob(asset, django_capture_on_commit_callbacks) -> None:
    file_path = stored_path(asset.blob)
    thumbnail_path = stored_path(asset.thumbnail)
    assert file_path.exists()
    assert thumbnail_path.exists()

    with django_capture_on_commit_callbacks(execute=True):
        asset.delete()

    assert not file_path.exists()
    assert not thumbnail_path.exists()
    assert Blob.objects.count() == 0


def test_delete_keeps_shared_blob(
    owner, stranger, asset, django_capture_on_commit_callbacks
) -> None:
    twin = make_asset(stranger, "first")
    assert twin.blob_id == asset.blob_id
    file_path = stored_path(asset.blob)

    with django_capture_on_commit_callbacks(execute=True):
        asset.delete()

    assert file_path.exists()
    assert Blob.objects.filter(pk=twin.blob_id).exists()
    assert stored_bytes(twin) == noise_png("first")


def test_delete_last_sharer_removes_blob(
    owner, asset, django_capture_on_commit_callbacks
) -> None:
    twin = make_asset(owner, "first")
    file_path = stored_path(asset.blob)

    with django_capture_on_commit_callbacks(execute=True):
        asset.delete()
    with django_capture_on_commit_callbacks(execute=True):
        twin.delete()

    assert not file_path.exists()
    assert Blob.objects.count() == 0


def test_delete_waits_for_commit(asset, django_capture_on_commit_callbacks) -> None:
    file_path = stored_path(asset.blob)

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        asset.delete()

    assert len(callbacks) == 1
    assert file_path.exists()


@pytest.mark.django_db(transaction=True)
def test_delete_in_autocommit(owner) -> None:
    asset = make_asset(owner)
    twin = make_asset(owner, "first")
    file_path = stored_path(asset.blob)

    asset.delete()
    assert file_path.exists()

    twin.delete()
    assert not file_path.exists()
