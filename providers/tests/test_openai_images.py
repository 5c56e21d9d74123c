"""The OpenAI Images adapter, from submit to stored assets, against a fake vendor."""

import base64

import pytest

from generation.models import Job
from providers.adapters.base import ReferenceImage
from providers.adapters.openai_images import (
    OpenAIImagesAdapter,
    image_type,
    reference_upload,
)
from providers.errors import ProviderError
from providers.tests.fakes.media import png_bytes
from providers.tests.fakes.openai_images import (
    API_KEY,
    RETRY_AFTER_SECONDS,
    FakeOpenAIImages,
)
from providers.tests.openai_jobs import (
    PRICE,
    RecordingContext,
    add_image_model,
    add_provider,
    asset_content,
    call_texts,
    calls_of,
    decode_image,
    direct_request,
    fund,
    hold_status,
    job_json,
    library_image,
    make_due,
    run_worker,
    submit,
)

MODEL = "gpt-image-1"
PARAMS = {"size": "1024x1024"}
GENERATIONS = "/v1/images/generations"
EDITS = "/v1/images/edits"


@pytest.fixture(autouse=True)
def timings(settings) -> None:
    # A long backoff keeps a re-queued job out of the same burst run.
    settings.RETRY_BASE_SECONDS = 60
    settings.VENDOR_CONNECT_TIMEOUT = 2
    settings.OPENAI_IMAGES_TIMEOUT = 5
    settings.DOWNLOAD_CONNECT_TIMEOUT = 2
    settings.DOWNLOAD_READ_TIMEOUT = 5


@pytest.fixture
def start_vendor(transactional_db, owner):
    """Start a fake in a scenario, configured as the provider of gpt-image-1.

    The worker closes stale connections, which would break the test transaction
    of the plain `db` fixture, so these tests commit and flush.
    """
    started = []

    def start(scenario: str) -> FakeOpenAIImages:
        fake = FakeOpenAIImages(scenario).__enter__()
        started.append(fake)
        add_image_model(add_provider("openai", "openai_images", fake.url))
        fund(owner)
        return fake

    yield start
    for fake in started:
        fake.__exit__(None, None, None)


def test_adapter_kind() -> None:
    assert OpenAIImagesAdapter.kind == "openai_images"


def test_b64_job_stores_two_images(start_vendor, owner_client) -> None:
    fake = start_vendor("b64")
    job_id = submit(owner_client, MODEL, {**PARAMS, "n": 2})

    run_worker()

    job = job_json(owner_client, job_id)
    assert job["status"] == "completed"
    assert job["error"] is None
    assert job["progress"] == 100
    assert len(job["assets"]) == 2
    contents = [asset_content(owner_client, asset) for asset in job["assets"]]
    assert sorted(contents) == sorted([png_bytes(seed=0), png_bytes(seed=1)])
    for asset, content in zip(job["assets"], contents, strict=True):
        assert asset["mime_type"] == "image/png"
        assert decode_image(content).size == (64, 64)
    assert hold_status(job_id) == "captured"
    assert fake.count("POST", GENERATIONS) == 1


def test_b64_request_body(start_vendor, owner_client) -> None:
    fake = start_vendor("b64")
    submit(owner_client, MODEL, {**PARAMS, "n": 2}, prompt="a red fox")

    run_worker()

    [request] = fake.requests
    body = request.json()
    assert request.headers["Authorization"] == f"Bearer {API_KEY}"
    assert body["model"] == "gpt-image-1"
    assert body["prompt"] == "a red fox"
    assert body["n"] == 2
    assert body["size"] == "1024x1024"
    assert "response_format" not in body


def test_b64_call_record_redacted(start_vendor, owner_client) -> None:
    start_vendor("b64")
    job_id = submit(owner_client, MODEL, PARAMS)

    run_worker()

    [call] = calls_of(job_id)
    assert call.method == "POST"
    assert call.status == 200
    assert call.url.endswith(GENERATIONS)
    assert '"prompt": "a lighthouse"' in call.request_excerpt
    full_base64 = base64.b64encode(png_bytes(seed=0)).decode()
    assert full_base64 not in call.response_excerpt
    assert API_KEY not in call_texts(job_id)


def test_url_job_downloads_from_fake(start_vendor, owner_client) -> None:
    fake = start_vendor("url")
    job_id = submit(owner_client, MODEL, PARAMS)

    run_worker()

    job = job_json(owner_client, job_id)
    assert job["status"] == "completed"
    [asset] = job["assets"]
    content = asset_content(owner_client, asset)
    assert content == png_bytes(seed=0)
    assert decode_image(content).format == "PNG"
    assert fake.count("GET", "/files/image-0.png") == 1
    assert hold_status(job_id) == "captured"
    assert API_KEY not in call_texts(job_id)


def test_edit_uploads_reference(start_vendor, owner, owner_client) -> None:
    fake = start_vendor("edit")
    reference = library_image(owner)
    params = {**PARAMS, "reference_asset": str(reference.pk)}
    job_id = submit(owner_client, MODEL, params, prompt="make it snow")

    run_worker()

    job = job_json(owner_client, job_id)
    assert job["status"] == "completed"
    assert len(job["assets"]) == 1
    assert fake.count("POST", EDITS) == 1
    assert fake.count("POST", GENERATIONS) == 0
    [parts] = fake.uploads
    image = parts["image"]
    assert image.filename == "reference.png"
    assert image.content_type == "image/png"
    assert image.content == png_bytes(size="96x64", seed=9)
    assert parts["prompt"].content == b"make it snow"
    assert parts["model"].content == b"gpt-image-1"
    assert parts["n"].content == b"1"
    assert parts["size"].content == b"1024x1024"
    assert hold_status(job_id) == "captured"


def test_edit_call_record_redacted(start_vendor, owner, owner_client) -> None:
    start_vendor("edit")
    params = {**PARAMS, "reference_asset": str(library_image(owner).pk)}
    job_id = submit(owner_client, MODEL, params)

    run_worker()

    [call] = calls_of(job_id)
    assert call.url.endswith(EDITS)
    assert "files: image" in call.request_excerpt
    assert API_KEY not in call_texts(job_id)


def test_auth_fails_without_retry(start_vendor, owner_client) -> None:
    fake = start_vendor("auth")
    job_id = submit(owner_client, MODEL, PARAMS)

    run_worker()

    job = job_json(owner_client, job_id)
    assert job["status"] == "failed"
    assert job["error"]["code"] == "provider_auth"
    assert "Incorrect API key provided" in job["error"]["message"]
    assert API_KEY not in job["error"]["message"]
    assert job["assets"] == []
    assert hold_status(job_id) == "released"
    assert fake.count("POST", GENERATIONS) == 1
    assert calls_of(job_id)[0].status == 401
    assert API_KEY not in call_texts(job_id)


def test_rate_limited_requeues_then_succeeds(
    start_vendor, owner_client, settings
) -> None:
    settings.RETRY_BASE_SECONDS = 0.01
    fake = start_vendor("rate_limited")
    job_id = submit(owner_client, MODEL, PARAMS)

    run_worker()

    job = job_json(owner_client, job_id)
    assert job["status"] == "queued"
    assert job["error"]["code"] == "provider_rate_limited"
    assert "Rate limit reached" in job["error"]["message"]
    stored = Job.objects.get(pk=job_id)
    wait = (stored.run_after - stored.updated_at).total_seconds()
    assert wait >= RETRY_AFTER_SECONDS
    assert hold_status(job_id) == "held"
    assert fake.count("POST", GENERATIONS) == 1

    make_due(job_id)
    run_worker()

    job = job_json(owner_client, job_id)
    assert job["status"] == "completed"
    assert job["error"] is None
    assert len(job["assets"]) == 1
    assert hold_status(job_id) == "captured"
    assert fake.count("POST", GENERATIONS) == 2
    assert [call.status for call in calls_of(job_id)] == [429, 200]


def test_server_error_retried_then_fails(start_vendor, owner_client) -> None:
    fake = start_vendor("server_error")
    job_id = submit(owner_client, MODEL, PARAMS)

    run_worker()

    job = job_json(owner_client, job_id)
    assert job["status"] == "queued"
    assert job["error"]["code"] == "provider_error"
    assert hold_status(job_id) == "held"

    for _ in range(2):
        make_due(job_id)
        run_worker()

    job = job_json(owner_client, job_id)
    assert job["status"] == "failed"
    assert job["error"]["code"] == "provider_error"
    assert "The server had an error" in job["error"]["message"]
    assert hold_status(job_id) == "released"
    assert fake.count("POST", GENERATIONS) == 3


def test_policy_rejected(start_vendor, owner_client) -> None:
    fake = start_vendor("policy")
    job_id = submit(owner_client, MODEL, PARAMS)

    run_worker()

    job = job_json(owner_client, job_id)
    assert job["status"] == "failed"
    assert job["error"]["code"] == "provider_rejected"
    assert "safety system" in job["error"]["message"]
    assert hold_status(job_id) == "released"
    assert fake.count("POST", GENERATIONS) == 1


def test_expired_link_download_failed(start_vendor, owner_client) -> None:
    fake = start_vendor("result_403")
    job_id = submit(owner_client, MODEL, PARAMS)

    run_worker()

    job = job_json(owner_client, job_id)
    assert job["status"] == "failed"
    assert job["error"]["code"] == "result_download_failed"
    assert job["assets"] == []
    assert hold_status(job_id) == "released"
    assert fake.count("POST", GENERATIONS) == 1
    assert fake.count("GET", "/files/expired-0.png") == 1


def test_html_result_invalid(start_vendor, owner_client) -> None:
    fake = start_vendor("result_html")
    job_id = submit(owner_client, MODEL, PARAMS)

    run_worker()

    job = job_json(owner_client, job_id)
    assert job["status"] == "failed"
    assert job["error"]["code"] == "result_invalid"
    assert job["assets"] == []
    assert hold_status(job_id) == "released"
    assert fake.count("POST", GENERATIONS) == 1


def test_read_timeout_not_retried(start_vendor, owner_client, settings) -> None:
    settings.OPENAI_IMAGES_TIMEOUT = 0.3
    fake = start_vendor("slow")
    job_id = submit(owner_client, MODEL, PARAMS)

    run_worker()

    job = job_json(owner_client, job_id)
    assert job["status"] == "failed"
    assert job["error"]["code"] == "provider_timeout"
    assert hold_status(job_id) == "released"
    assert fake.count("POST", GENERATIONS) == 1


def test_image_type_from_signature() -> None:
    assert image_type(png_bytes()) == "image/png"
    assert image_type(b"\xff\xd8\xff\xe0rest") == "image/jpeg"
    assert image_type(b"RIFF\x00\x00\x00\x00WEBPVP8 ") == "image/webp"


def test_reference_upload_names_extension() -> None:
    reference = ReferenceImage(b"jpeg", "image/jpeg", 8, 8)
    assert reference_upload(reference, "ref") == ("ref.jpg", b"jpeg", "image/jpeg")


def test_reference_upload_rejects_other_type() -> None:
    reference = ReferenceImage(b"tiff", "image/tiff", 8, 8)
    with pytest.raises(ProviderError) as caught:
        reference_upload(reference, "ref")
    assert caught.value.code == "invalid_request"
    assert "image/tiff" in caught.value.message


def test_price_of_two_images_held(start_vendor, owner_client) -> None:
    start_vendor("b64")
    job_id = submit(owner_client, MODEL, {**PARAMS, "n": 2})

    assert job_json(owner_client, job_id)["price"] == f"{2 * PRICE / 100:.2f}"


def test_adapter_progress_steps(settings) -> None:
    settings.OPENAI_IMAGES_TIMEOUT = 5
    with FakeOpenAIImages("b64") as fake:
        context = RecordingContext()
        request = direct_request("image", fake.url, size="1024x1024", n=3)
        results = OpenAIImagesAdapter().generate(request, context)

    assert context.reports == [5, 90, 100]
    assert [result.mime_type for result in results] == ["image/png"] * 3
    assert [result.content for result in results] == [
        png_bytes(seed=index) for index in range(3)
    ]
    assert len(context.calls) == 1
