import re

import pytest
from django.test import Client
from pytest_django.asserts import assertContains, assertNotContains

from assets.models import Asset
from generation.services import submit_job
from generation.worker import Worker
from providers.models import ModelSpec

# Worker.run() calls close_old_connections(), which drops the connection inside
# a test transaction, so tests that run the worker commit for real.
pytestmark = pytest.mark.django_db(transaction=True)

IMAGE_PROMPT = "一只在雨中奔跑的橘猫"
VIDEO_PROMPT = "a lighthouse at dusk"
THUMBNAIL_SRC = re.compile(r'<img src="/media/assets/([0-9a-f-]{36})/thumbnail"')


def page_client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def generate(owner, model: str, prompt: str, params: dict) -> Asset:
    job, _ = submit_job(owner, model, prompt, params)
    Worker(burst=True).run()
    return Asset.objects.get(source_job=job)


def copy_asset(asset: Asset, **changes) -> Asset:
    """Record another asset on the same stored files, which is fast."""
    fields = {
        "owner": asset.owner,
        "kind": asset.kind,
        "blob": asset.blob,
        "thumbnail": asset.thumbnail,
        "mime_type": asset.mime_type,
        "size_bytes": asset.size_bytes,
        "width": asset.width,
        "height": asset.height,
        "prompt": asset.prompt,
    }
    fields.update(changes)
    return Asset.objects.create(**fields)


def thumbnail_ids(response) -> list[str]:
    return THUMBNAIL_SRC.findall(response.content.decode())


@pytest.fixture
def owner_page(catalog, owner) -> Client:
    return page_client(owner)


@pytest.fixture
def stranger_page(catalog, stranger) -> Client:
    return page_client(stranger)


@pytest.fixture
def staff_page(catalog, staff) -> Client:
    return page_client(staff)


@pytest.fixture
def image(catalog, owner) -> Asset:
    return generate(owner, "local-image", IMAGE_PROMPT, {"size": "512x512"})


@pytest.fixture
def video(catalog, owner) -> Asset:
    params = {"size": "360x640", "duration": 2}
    return generate(owner, "local-video", VIDEO_PROMPT, params)


def test_library_shows_thumbnail_grid(owner_page, image, video):
    response = owner_page.get("/library")

    assert response.status_code == 200
    assertContains(response, '<div class="grid">')
    assert thumbnail_ids(response) == [str(video.pk), str(image.pk)]
    assertContains(response, f'href="/library/{image.pk}"')
    assertContains(response, f'href="/library/{video.pk}"')


def test_library_marks_videos(owner_page, video):
    response = owner_page.get("/library")

    assertContains(response, '<span class="badge">▶ 2s</span>', html=True)


def test_library_hides_stranger_assets(stranger_page, image):
    response = stranger_page.get("/library")

    assert response.status_code == 200
    assert thumbnail_ids(response) == []
    assertNotContains(response, str(image.pk))
    assertContains(response, "Nothing here yet.")


def test_library_paginates_past_48(owner_page, image):
    for _ in range(49):
        copy_asset(image)

    first = owner_page.get("/library")
    second = owner_page.get("/library?page=2")

    assert len(thumbnail_ids(first)) == 48
    assertContains(first, "Page 1 of 2")
    assertContains(first, 'href="?page=2"')
    assert len(thumbnail_ids(second)) == 2
    assertContains(second, "Page 2 of 2")
    assertContains(second, 'href="?page=1"')


def test_library_pages_do_not_overlap(owner_page, image):
    for _ in range(49):
        copy_asset(image)

    first = thumbnail_ids(owner_page.get("/library"))
    second = thumbnail_ids(owner_page.get("/library?page=2"))

    assert set(first).isdisjoint(second)
    assert len(set(first) | set(second)) == 50


def test_library_bad_page_shows_first(owner_page, image):
    response = owner_page.get("/library?page=abc")

    assert response.status_code == 200
    assert thumbnail_ids(response) == [str(image.pk)]


def test_library_single_page_hides_pager(owner_page, image):
    response = owner_page.get("/library")

    assertNotContains(response, 'class="pages"')


def test_image_page_shows_img(owner_page, image):
    response = owner_page.get(f"/library/{image.pk}")

    assert response.status_code == 200
    assertContains(response, f'<img src="/media/assets/{image.pk}/file"')
    assertContains(response, 'width="512" height="512"')
    assertNotContains(response, "<video")
    assertContains(response, IMAGE_PROMPT)


def test_video_page_shows_player(owner_page, video):
    response = owner_page.get(f"/library/{video.pk}")

    content = response.content.decode()
    tag = re.search(r"<video[^>]*>", content).group(0)
    assert f'src="/media/assets/{video.pk}/file"' in tag
    assert f'poster="/media/assets/{video.pk}/thumbnail"' in tag
    assert " controls" in tag
    assertContains(response, "2.0 s")


def test_asset_page_links_download(owner_page, image):
    response = owner_page.get(f"/library/{image.pk}")

    assertContains(response, f'href="/media/assets/{image.pk}/file?download=1"')


def test_remix_link_fills_generator(owner_page, image):
    page = owner_page.get(f"/library/{image.pk}").content.decode()
    link = re.search(r'<a href="([^"]+)">Remix</a>', page).group(1)

    response = owner_page.get(link.replace("&amp;", "&"))

    assert link.startswith("/?model=local-image&")
    assertContains(response, '<option value="local-image" selected')
    assertContains(response, f">{IMAGE_PROMPT}</textarea>")


def test_download_link_sends_attachment(owner_page, image):
    response = owner_page.get(f"/media/assets/{image.pk}/file?download=1")

    assert response.status_code == 200
    assert response.headers["Content-Disposition"].startswith("attachment;")
    assert response.headers["Content-Type"] == image.mime_type


def test_stranger_asset_page_not_found(stranger_page, image):
    response = stranger_page.get(f"/library/{image.pk}")

    assert response.status_code == 404


def test_staff_views_asset_page(staff_page, image):
    response = staff_page.get(f"/library/{image.pk}")

    assert response.status_code == 200
    assertContains(response, f'<img src="/media/assets/{image.pk}/file"')


def test_owner_fetches_media(owner_page, image):
    thumbnail = owner_page.get(f"/media/assets/{image.pk}/thumbnail")
    original = owner_page.get(f"/media/assets/{image.pk}/file")

    assert thumbnail.status_code == 200
    assert thumbnail.headers["Content-Type"] == "image/webp"
    assert original.status_code == 200
    assert b"".join(original.streaming_content) == image.blob.file.read()


def test_stranger_media_not_found(stranger_page, image):
    thumbnail = stranger_page.get(f"/media/assets/{image.pk}/thumbnail")
    original = stranger_page.get(f"/media/assets/{image.pk}/file")

    assert thumbnail.status_code == 404
    assert original.status_code == 404


def test_anonymous_media_not_found(image):
    response = Client().get(f"/media/assets/{image.pk}/thumbnail")

    assert response.status_code == 404


def test_staff_fetches_media(staff_page, image):
    response = staff_page.get(f"/media/assets/{image.pk}/thumbnail")

    assert response.status_code == 200


def test_asset_page_hides_reference_without_model(owner_page, image):
    response = owner_page.get(f"/library/{image.pk}")

    assertNotContains(response, "Use as reference")


def test_asset_page_links_reference_model(owner_page, image):
    ModelSpec.objects.filter(name="local-image").update(supports=["reference_asset"])

    response = owner_page.get(f"/library/{image.pk}")

    assertContains(response, f"?model=local-image&reference_asset={image.pk}")
