"""The OpenAI Videos adapter, from submit to stored assets, against a fake vendor."""

import threading
import time
from itertools import pairwise

import pytest
from django.db import connection

from conftest import client_for
from generation.models import Job
from providers.adapters.base import ReferenceImage
from providers.adapters.openai_videos import (
    OpenAIVideosAdapter,
    failure_error,
    fitted_reference,
    poll_interval,
)
from providers.catalog import DEFAULT_CATALOG, load_catalog
from providers.errors import ProviderError
from providers.models import ModelSpec, Provider
from providers.tests.fakes.media import mp4_bytes, png_bytes
from providers.tests.fakes.openai_images import API_KEY
from providers.tests.fakes.openai_videos import (
    POLL_AFTER_MS,
    RETRY_AFTER_SECONDS,
    FakeOpenAIVideos,
)
from providers.tests.openai_jobs import (
    RecordingContext,
    add_provider,
    add_video_model,
    asset_content,
    call_texts,
    calls_of,
    count_video_frames,
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

MODEL = "sora-2"
PARAMS = {"size": "1280x720", "duration": 8}
CREATE = "/v1/videos"
FALLBACK_POLL_SECONDS = 0.05


@pytest.fixture(autouse=True)
def timings(settings) -> None:
    # A long backoff keeps a re-queued job out of the same burst run.
    settings.RETRY_BASE_SECONDS = 60
    settings.VENDOR_CONNECT_TIMEOUT = 2
    settings.VENDOR_READ_TIMEOUT = 5
    settings.DOWNLOAD_READ_TIMEOUT = 5
    settings.OPENAI_VIDEOS_POLL_SECONDS = FALLBACK_POLL_SECONDS


@pytest.fixture
def start_vendor(transactional_db, owner):
    """Start a fake in a scenario, configured as the provider of sora-2.

    The worker closes stale connections, which would break the test transaction
    of the plain `db` fixture, so these tests commit and flush.
    """
    started = []

    def start(scenario: str, deadline_seconds: int = 60) -> FakeOpenAIVideos:
        fake = FakeOpenAIVideos(scenario).__enter__()
        started.append(fake)
        provider = add_provider("openai-videos", "openai_videos", fake.url)
        add_video_model(provider, deadline_seconds)
        fund(owner)
        return fake

    yield start
    for fake in started:
        fake.__exit__(None, None, None)


def creates(fake: FakeOpenAIVideos) -> int:
    return sum(1 for r in fake.requests if r.method == "POST" and r.path == CREATE)


def assert_failed(client, job_id: str, code: str) -> dict:
    job = job_json(client, job_id)
    assert job["status"] == "failed"
    assert job["error"]["code"] == code
    assert job["assets"] == []
    assert hold_status(job_id) == "released"
    return job


def test_adapter_kind() -> None:
    assert OpenAIVideosAdapter.kind == "openai_videos"


def test_ok_job_stores_video(start_vendor, owner_client) -> None:
    fake = start_vendor("ok")
    job_id = submit(owner_client, MODEL, PARAMS)

    run_worker()

    job = job_json(owner_client, job_id)
    assert job["status"] == "completed"
    assert job["error"] is None
    assert job["progress"] == 100
    [asset] = job["assets"]
    assert asset["kind"] == "video"
    assert asset["mime_type"] == "video/mp4"
    content = asset_content(owner_client, asset)
    assert content == mp4_bytes()
    assert count_video_frames(content) > 0
    assert hold_status(job_id) == "captured"
    assert creates(fake) == 1
    assert Job.objects.get(pk=job_id).remote_task_id == "video_0001fake"


def test_ok_create_body(start_vendor, owner_client) -> None:
    fake = start_vendor("ok")
    submit(owner_client, MODEL, PARAMS, prompt="waves at night")

    run_worker()

    create = fake.requests[0]
    body = create.json()
    assert create.headers["Authorization"] == f"Bearer {API_KEY}"
    assert body["model"] == "sora-2"
    assert body["prompt"] == "waves at night"
    assert body["seconds"] == "8"
    assert body["size"] == "1280x720"


def test_ok_polls_then_fetches_content(start_vendor, owner_client) -> None:
    fake = start_vendor("ok")
    submit(owner_client, MODEL, PARAMS)

    run_worker()

    paths = [request.path for request in fake.requests]
    assert paths[0] == CREATE
    assert paths[1:5] == ["/v1/videos/video_0001fake"] * 4
    assert paths[5:] == ["/v1/videos/video_0001fake/content?variant=video"]


def test_ok_honours_poll_header(start_vendor, owner_client, settings) -> None:
    settings.OPENAI_VIDEOS_POLL_SECONDS = 2
    fake = start_vendor("ok")
    submit(owner_client, MODEL, PARAMS)

    run_worker()

    gaps = [later - earlier for earlier, later in pairwise(fake.poll_times)]
    assert len(gaps) == 3
    for gap in gaps:
        assert gap >= POLL_AFTER_MS / 1000
        # Far below the fallback interval, so the header decided the wait.
        assert gap < 1


def test_ok_call_records_redacted(start_vendor, owner_client) -> None:
    start_vendor("ok")
    job_id = submit(owner_client, MODEL, PARAMS)

    run_worker()

    calls = calls_of(job_id)
    assert [call.method for call in calls] == ["POST"] + ["GET"] * 5
    assert all(call.status == 200 for call in calls)
    assert "streamed body" in calls[-1].response_excerpt
    assert API_KEY not in call_texts(job_id)


def test_reference_sent_as_file(start_vendor, owner, owner_client) -> None:
    fake = start_vendor("ok")
    params = {**PARAMS, "reference_asset": str(library_image(owner).pk)}
    job_id = submit(owner_client, MODEL, params, prompt="animate this")

    run_worker()

    assert job_json(owner_client, job_id)["status"] == "completed"
    [parts] = fake.uploads
    reference = parts["input_reference"]
    assert reference.filename == "reference.png"
    assert reference.content_type == "image/png"
    # The 96x64 library image is cropped and scaled to the video's size.
    assert decode_image(reference.content).size == (1280, 720)
    assert parts["prompt"].content == b"animate this"
    assert parts["seconds"].content == b"8"
    assert parts["size"].content == b"1280x720"
    assert creates(fake) == 1


def test_failed_task_fails_job(start_vendor, owner_client) -> None:
    fake = start_vendor("failed")
    job_id = submit(owner_client, MODEL, PARAMS)

    run_worker()

    job = assert_failed(owner_client, job_id, "provider_error")
    assert "video_generation_failed" in job["error"]["message"]
    assert "The video could not be generated." in job["error"]["message"]
    assert creates(fake) == 1
    assert fake.count("GET", "/v1/videos/video_0001fake/content") == 0


def test_policy_failed_rejected(start_vendor, owner_client) -> None:
    fake = start_vendor("policy_failed")
    job_id = submit(owner_client, MODEL, PARAMS)

    run_worker()

    job = assert_failed(owner_client, job_id, "provider_rejected")
    assert "blocked by our moderation system" in job["error"]["message"]
    assert creates(fake) == 1


def test_auth_fails_without_retry(start_vendor, owner_client) -> None:
    fake = start_vendor("auth")
    job_id = submit(owner_client, MODEL, PARAMS)

    run_worker()

    job = assert_failed(owner_client, job_id, "provider_auth")
    assert "Incorrect API key provided" in job["error"]["message"]
    assert creates(fake) == 1
    assert fake.videos == {}
    assert Job.objects.get(pk=job_id).remote_task_id == ""
    assert API_KEY not in call_texts(job_id)


def test_rate_limited_create_requeues(start_vendor, owner_client, settings) -> None:
    settings.RETRY_BASE_SECONDS = 0.01
    fake = start_vendor("rate_limited_create")
    job_id = submit(owner_client, MODEL, PARAMS)

    run_worker()

    job = job_json(owner_client, job_id)
    assert job["status"] == "queued"
    assert job["error"]["code"] == "provider_rate_limited"
    stored = Job.objects.get(pk=job_id)
    wait = (stored.run_after - stored.updated_at).total_seconds()
    assert wait >= RETRY_AFTER_SECONDS
    assert stored.remote_task_id == ""
    assert hold_status(job_id) == "held"

    make_due(job_id)
    run_worker()

    job = job_json(owner_client, job_id)
    assert job["status"] == "completed"
    assert job["error"] is None
    assert len(job["assets"]) == 1
    assert hold_status(job_id) == "captured"
    assert creates(fake) == 2
    assert len(fake.videos) == 1


def test_never_finishes_times_out(start_vendor, owner_client) -> None:
    fake = start_vendor("never_finishes", deadline_seconds=1)
    job_id = submit(owner_client, MODEL, PARAMS)

    started = time.monotonic()
    run_worker()

    assert time.monotonic() - started < 5
    job = assert_failed(owner_client, job_id, "provider_timeout")
    assert "1 seconds" in job["error"]["message"]
    assert creates(fake) == 1


def test_never_finishes_uses_fallback_interval(start_vendor, owner_client) -> None:
    fake = start_vendor("never_finishes", deadline_seconds=1)
    submit(owner_client, MODEL, PARAMS)

    run_worker()

    gaps = [later - earlier for earlier, later in pairwise(fake.poll_times)]
    assert len(gaps) >= 5
    # The last wait is cut short at the deadline, for one final poll.
    assert min(gaps[:-1]) >= FALLBACK_POLL_SECONDS


def test_content_403_download_failed(start_vendor, owner_client) -> None:
    fake = start_vendor("content_403")
    job_id = submit(owner_client, MODEL, PARAMS)

    run_worker()

    job = assert_failed(owner_client, job_id, "result_download_failed")
    assert "HTTP 403" in job["error"]["message"]
    assert creates(fake) == 1
    assert fake.count("GET", "/v1/videos/video_0001fake/content") == 1


def test_resume_polls_without_create(start_vendor, owner_client) -> None:
    fake = start_vendor("ok")
    fake.add_video("video_resumed")
    job_id = submit(owner_client, MODEL, PARAMS)
    Job.objects.filter(pk=job_id).update(remote_task_id="video_resumed")

    run_worker()

    job = job_json(owner_client, job_id)
    assert job["status"] == "completed"
    assert len(job["assets"]) == 1
    assert hold_status(job_id) == "captured"
    assert creates(fake) == 0
    assert fake.polls["video_resumed"] == 4


def test_poll_error_requeues_then_resumes(start_vendor, owner_client) -> None:
    fake = start_vendor("poll_server_error")
    job_id = submit(owner_client, MODEL, PARAMS)

    run_worker()

    job = job_json(owner_client, job_id)
    assert job["status"] == "queued"
    assert job["error"]["code"] == "provider_error"
    assert Job.objects.get(pk=job_id).remote_task_id == "video_0001fake"

    make_due(job_id)
    run_worker()

    job = job_json(owner_client, job_id)
    assert job["status"] == "completed"
    assert hold_status(job_id) == "captured"
    assert creates(fake) == 1


def test_cancel_during_polling_stops(start_vendor, owner) -> None:
    fake = start_vendor("never_finishes", deadline_seconds=60)
    client = client_for(owner)
    job_id = submit(client, MODEL, PARAMS)
    canceled = {}

    def cancel_while_polling() -> None:
        give_up = time.monotonic() + 10
        while len(fake.poll_times) < 3 and time.monotonic() < give_up:
            time.sleep(0.01)
        response = client_for(owner).post(f"/api/jobs/{job_id}/cancel")
        canceled["status"] = response.status_code
        canceled["at"] = time.monotonic()
        connection.close()

    canceler = threading.Thread(target=cancel_while_polling)
    canceler.start()
    run_worker()
    stopped_at = time.monotonic()
    canceler.join()

    assert canceled["status"] == 200
    assert stopped_at - canceled["at"] < 2
    job = job_json(client, job_id)
    assert job["status"] == "canceled"
    assert job["assets"] == []
    assert hold_status(job_id) == "released"
    assert creates(fake) == 1


def test_poll_interval_from_header(settings) -> None:
    settings.OPENAI_VIDEOS_POLL_SECONDS = 7
    assert poll_interval({"openai-poll-after-ms": "1500"}) == 1.5
    assert poll_interval({}) == 7
    assert poll_interval({"openai-poll-after-ms": "soon"}) == 7
    assert poll_interval({"openai-poll-after-ms": "nan"}) == 7
    assert poll_interval({"openai-poll-after-ms": "0"}) == 0.01
    assert poll_interval({"openai-poll-after-ms": "999999999"}) == 60


def test_failure_error_classified() -> None:
    rejected = failure_error({"code": "moderation_blocked", "message": "Blocked."})
    failed = failure_error({"code": "internal_error", "message": "Broke."})
    empty = failure_error(None)
    assert rejected.code == "provider_rejected"
    assert rejected.retryable is False
    assert failed.code == "provider_error"
    assert failed.retryable is False
    assert "internal_error" in failed.message
    assert empty.code == "provider_error"


def test_adapter_saves_id_before_polling() -> None:
    with FakeOpenAIVideos("ok") as fake:
        context = RecordingContext(fake=fake)
        request = direct_request("video", fake.url, **PARAMS)
        [result] = OpenAIVideosAdapter().generate(request, context)

    assert context.task_ids == ["video_0001fake"]
    assert context.polls_at_save == 0
    assert context.reports == [5, 5, 32, 68, 100]
    assert result.mime_type == "video/mp4"
    assert result.content == mp4_bytes()
    assert len(context.calls) == 6


def test_adapter_stops_when_progress_returns() -> None:
    # A context whose progress() does not raise still ends the polling.
    with FakeOpenAIVideos("never_finishes") as fake:
        context = RecordingContext(stop_after_polls=2, fake=fake)
        request = direct_request("video", fake.url, **PARAMS)
        with pytest.raises(ProviderError) as caught:
            OpenAIVideosAdapter().generate(request, context)

    assert caught.value.code == "provider_error"
    assert caught.value.retryable is False
    assert len(fake.poll_times) == 2


def test_catalog_entries_need_key(db, monkeypatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    load_catalog(DEFAULT_CATALOG)

    sora = ModelSpec.objects.select_related("provider").get(name="sora-2")
    image = ModelSpec.objects.select_related("provider").get(name="gpt-image-1")
    assert sora.provider.kind == "openai_videos"
    assert sora.durations == [4, 8, 12]
    assert sora.deadline_seconds == 1800
    assert image.provider.kind == "openai_images"
    assert image.max_n == 4
    assert sora.provider.enabled is False
    assert image.provider.enabled is False


def test_catalog_entries_enabled_with_key(db, monkeypatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "key-from-environment")
    load_catalog(DEFAULT_CATALOG)

    assert Provider.objects.get(name="openai").enabled is True
    assert Provider.objects.get(name="openai-videos").enabled is True


def test_fitted_reference_keeps_matching_size() -> None:
    reference = ReferenceImage(png_bytes(size="96x64"), "image/png", 96, 64)
    assert fitted_reference(reference, "96x64") is reference


def test_fitted_reference_crops_to_size() -> None:
    reference = ReferenceImage(png_bytes(size="96x64"), "image/png", 96, 64)
    fitted = fitted_reference(reference, "720x1280")
    assert fitted.mime_type == "image/png"
    assert (fitted.width, fitted.height) == (720, 1280)
    assert decode_image(fitted.content).size == (720, 1280)


def test_garbled_poll_is_retryable() -> None:
    with FakeOpenAIVideos("poll_garbled") as fake:
        context = RecordingContext(fake=fake)
        request = direct_request("video", fake.url, **PARAMS)
        with pytest.raises(ProviderError) as caught:
            OpenAIVideosAdapter().generate(request, context)

    assert caught.value.code == "provider_error"
    assert caught.value.retryable is True
    assert "text/html" in caught.value.message
    assert context.task_ids == ["video_0001fake"]
