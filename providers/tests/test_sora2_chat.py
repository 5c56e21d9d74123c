"""The sora2_chat adapter against a fake gateway on loopback, unit and job path."""

import base64
import io
import threading
import time
from datetime import timedelta

import av
import pytest
from django.db import connection
from django.utils import timezone

from accounts.models import UserPreference
from assets.models import Asset
from billing.models import Hold
from billing.services import topup
from generation.models import Job, ProviderCall
from generation.tests.factories import body_of, fetch, submit
from generation.worker import Worker
from providers.adapters import sora2_chat
from providers.adapters.base import GenerationRequest, ReferenceImage, VendorCall
from providers.adapters.sora2_chat import Sora2ChatAdapter, StreamState
from providers.catalog import DEFAULT_CATALOG, load_catalog, upsert_model
from providers.errors import ProviderError
from providers.models import ModelSpec, Provider
from providers.tests.fakes import sora2_chat as fake_gateway
from providers.tests.fakes.media import png_bytes
from providers.tests.fakes.sora2_chat import FakeSora2

API_KEY = "test-key"
PROMPT = "一只橘猫在雨中奔跑"
VIDEO_MODEL = "fake-sora-video"
IMAGE_MODEL = "fake-sora-image"
REFUSAL_TEXT = fake_gateway.REFUSAL.removeprefix("❌").strip()
CHINESE_ERROR = "上游服务错误：视频生成失败，请稍后再试"  # noqa: RUF001

job_path = pytest.mark.django_db(transaction=True)


class Stopped(Exception):
    pass


class RecordingContext:
    """JobContext that records progress and calls, and stops `stop_after` s in.

    After the stop, progress() raises Stopped unless `raises` is False.
    """

    def __init__(self, stop_after: float | None = None, raises: bool = True) -> None:
        self.reports: list[int] = []
        self.report_times: list[float] = []
        self.calls: list[VendorCall] = []
        self.stop_at = None if stop_after is None else time.monotonic() + stop_after
        self.raises = raises
        self.stopping = False

    def progress(self, percent: int) -> None:
        self.reports.append(percent)
        self.report_times.append(time.monotonic())
        if self.stopping and self.raises:
            raise Stopped

    def save_task_id(self, task_id: str) -> None:
        raise AssertionError(f"unexpected vendor task id {task_id!r}")

    def record_call(self, call: VendorCall) -> None:
        self.calls.append(call)

    def should_stop(self) -> bool:
        self.stopping = self.stop_at is not None and time.monotonic() >= self.stop_at
        return self.stopping


def make_request(fake: FakeSora2, **fields) -> GenerationRequest:
    values = {
        "job_id": "job-1",
        "kind": "video",
        "remote_model": "sora-video-10s",
        "prompt": PROMPT,
        "params": {},
        "base_url": fake.url,
        "api_key": API_KEY,
        "provider_name": "sora2-fake",
    }
    return GenerationRequest(**{**values, **fields})


def generate(fake: FakeSora2, context=None, **fields):
    context = context or RecordingContext()
    return Sora2ChatAdapter().generate(make_request(fake, **fields), context)


# Unit: the adapter with a recording context.


def test_progress_from_narration() -> None:
    context = RecordingContext()
    with FakeSora2("video_ok") as fake:
        files = generate(fake, context)

    assert context.reports == [1, 12, 36, 81, 95]
    assert [file.mime_type for file in files] == ["video/mp4"]


@pytest.mark.parametrize("chunked", [False, True])
def test_progress_arrives_live(chunked: bool) -> None:
    context = RecordingContext()
    with FakeSora2("video_ok", pause=0.25, chunked=chunked) as fake:
        generate(fake, context)

    first, *_, last = context.report_times
    assert context.reports == [1, 12, 36, 81, 95]
    # Five events 0.25 s apart: a reader that waits for a full buffer would
    # report them all at once, at the end of the stream.
    assert last - first > 0.8


def test_chunked_stream_completes() -> None:
    with FakeSora2("image_ok", chunked=True) as fake:
        files = generate(fake, kind="image", remote_model="sora-image")

    assert [file.mime_type for file in files] == ["image/png", "image/png"]


def test_chunked_stream_cut_fails() -> None:
    context = RecordingContext()
    fake = FakeSora2("cut_without_done", chunked=True)
    with fake, pytest.raises(ProviderError) as caught:
        generate(fake, context)

    assert caught.value.code == "provider_error"
    assert caught.value.retryable is False
    assert context.reports == [1, 12, 36]


def test_request_body_text_only() -> None:
    with FakeSora2("video_ok") as fake:
        generate(fake)
        body = fake.requests[0].json()

    assert body["model"] == "sora-video-10s"
    assert body["stream"] is True
    assert body["messages"] == [{"role": "user", "content": PROMPT}]


def test_body_sends_reference_inline(settings) -> None:
    image = png_bytes("32x32", 3)
    reference = ReferenceImage(image, "image/png", 32, 32)
    request = GenerationRequest(
        "j", "image", "sora-image", "a cat", {}, reference=reference
    )

    content = sora2_chat.chat_body(request)["messages"][-1]["content"]

    assert content[0] == {"type": "text", "text": "a cat"}
    assert content[1]["type"] == "image_url"
    encoded = base64.b64encode(image).decode()
    assert content[1]["image_url"]["url"] == f"data:image/png;base64,{encoded}"


def test_body_rejects_large_reference(settings) -> None:
    settings.MAX_REFERENCE_BYTES = 10
    reference = ReferenceImage(png_bytes("32x32", 3), "image/png", 32, 32)
    request = GenerationRequest(
        "j", "image", "sora-image", "a cat", {}, reference=reference
    )

    with pytest.raises(ProviderError) as caught:
        sora2_chat.chat_body(request)

    assert caught.value.code == "invalid_request"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (
            "<video src='https://a.test/v.mp4?a=1&amp;b=2' controls>",
            ["https://a.test/v.mp4?a=1&b=2"],
        ),
        (
            '```html\n<video controls src="https://a.test/v.mp4"></video>\n```',
            ["https://a.test/v.mp4"],
        ),
        (
            "![Generated Image](https://a.test/1.png)\n![Generated Image](https://a.test/2.png)",
            ["https://a.test/1.png", "https://a.test/2.png"],
        ),
        (
            "![x](https://a.test/1.png) ![x](https://a.test/1.png)",
            ["https://a.test/1.png"],
        ),
    ],
)
def test_result_urls_found(content: str, expected: list[str]) -> None:
    state = StreamState(content=[content], finish_reason="STOP")

    assert sora2_chat.result_urls(state) == expected


def test_result_urls_skip_other_schemes() -> None:
    state = StreamState(content=["![x](file:///etc/passwd)"], done=True)

    with pytest.raises(ProviderError) as caught:
        sora2_chat.result_urls(state)

    assert caught.value.code == "provider_rejected"


def test_deadline_times_out(settings) -> None:
    context = RecordingContext()
    with FakeSora2("slow", slow_pause=0.2) as fake:
        started = time.monotonic()
        with pytest.raises(ProviderError) as caught:
            generate(fake, context, limits={"deadline_seconds": 0.5})
        elapsed = time.monotonic() - started

    assert caught.value.code == "provider_timeout"
    assert caught.value.retryable is False
    assert elapsed < 1.5


def test_stop_raises_from_context() -> None:
    context = RecordingContext(stop_after=0.3)
    with FakeSora2("slow") as fake:
        started = time.monotonic()
        with pytest.raises(Stopped):
            generate(fake, context)
        elapsed = time.monotonic() - started

    assert elapsed < 1.5
    assert context.reports == [1, 1]


def test_stop_when_context_returns() -> None:
    context = RecordingContext(stop_after=0.3, raises=False)
    with FakeSora2("slow") as fake, pytest.raises(ProviderError) as caught:
        generate(fake, context)

    assert caught.value.code == "provider_error"
    assert caught.value.retryable is False


def test_stream_summary_recorded() -> None:
    context = RecordingContext()
    with FakeSora2("refusal") as fake, pytest.raises(ProviderError):
        generate(fake, context)

    stream = [call for call in context.calls if call.method == "STREAM"]
    assert len(stream) == 1
    assert "finish_reason=STOP" in stream[0].response_excerpt
    assert fake_gateway.REFUSAL in stream[0].response_excerpt
    assert stream[0].error.startswith("provider_rejected:")


# Catalog: the default entries of this provider.


@pytest.fixture
def default_catalog(db, monkeypatch):
    def load(key: str | None = None) -> Provider:
        monkeypatch.delenv("SORA2_API_KEY", raising=False)
        if key:
            monkeypatch.setenv("SORA2_API_KEY", key)
        load_catalog(DEFAULT_CATALOG)
        return Provider.objects.get(name="sora2")

    return load


def test_catalog_disabled_without_key(default_catalog) -> None:
    provider = default_catalog()

    assert provider.kind == "sora2_chat"
    assert provider.enabled is False
    assert not ModelSpec.objects.available().filter(provider=provider).exists()


def test_catalog_enabled_with_key(default_catalog) -> None:
    provider = default_catalog(key="sk-from-environment")

    assert provider.enabled is True
    assert provider.resolve_api_key() == "sk-from-environment"
    assert ModelSpec.objects.available().filter(provider=provider).count() == 9


@pytest.mark.parametrize(
    ("name", "kind", "size", "durations"),
    [
        ("sora-video-10s", "video", "1280x720", [10]),
        ("sora-video-15s", "video", "1280x720", [15]),
        ("sora-video-landscape-10s", "video", "1280x720", [10]),
        ("sora-video-landscape-15s", "video", "1280x720", [15]),
        ("sora-video-portrait-10s", "video", "720x1280", [10]),
        ("sora-video-portrait-15s", "video", "720x1280", [15]),
        ("sora-image", "image", "360x360", []),
        ("sora-image-landscape", "image", "540x360", []),
        ("sora-image-portrait", "image", "360x540", []),
    ],
)
def test_catalog_model_limits(default_catalog, name, kind, size, durations) -> None:
    default_catalog()
    model = ModelSpec.objects.get(name=name)

    assert model.provider.name == "sora2"
    assert model.kind == kind
    assert model.remote_name == name
    assert model.sizes == [size]
    assert model.durations == durations
    assert model.supports == ["reference_asset"]
    assert model.price > 0


# Job path: submit through the API, run the worker, read the job.


@pytest.fixture
def gateway_models(owner):
    """Point a sora2_chat provider at `fake` with one video and one image model."""

    def install(fake: FakeSora2, api_key: str = API_KEY) -> Provider:
        provider = Provider.objects.create(
            name="sora2-fake",
            kind="sora2_chat",
            base_url=fake.url,
            api_key=api_key,
            enabled=True,
        )
        upsert_model(video_entry())
        upsert_model(image_entry())
        topup(owner, 2000, "test credit")
        return provider

    return install


def video_entry() -> dict:
    return {
        "name": VIDEO_MODEL,
        "provider": "sora2-fake",
        "kind": "video",
        "remote_name": "sora-video-10s",
        "price": "1.50",
        "sizes": ["1280x720"],
        "durations": [10],
        "deadline_seconds": 60,
        "supports": ["reference_asset"],
    }


def image_entry() -> dict:
    return {
        **video_entry(),
        "name": IMAGE_MODEL,
        "kind": "image",
        "remote_name": "sora-image",
        "sizes": ["360x360"],
        "durations": [],
    }


def run_job(client, model: str = VIDEO_MODEL, params: dict | None = None) -> dict:
    response = submit(client, model=model, prompt=PROMPT, params=params or {})
    assert response.status_code == 201, response.data
    Worker(burst=True).run()
    return client.get(f"/api/jobs/{response.data['id']}").data


def run_scenario(client, gateway_models, scenario: str, **options) -> dict:
    model = IMAGE_MODEL if scenario.startswith("image") else VIDEO_MODEL
    with FakeSora2(scenario, **options) as fake:
        gateway_models(fake)
        return run_job(client, model)


def hold_status(job: dict) -> str:
    return Hold.objects.get(job_id=job["id"]).status


def call_rows(job: dict) -> list[ProviderCall]:
    return list(ProviderCall.objects.filter(job_id=job["id"]))


def assert_redacted(job: dict) -> None:
    for row in call_rows(job):
        text = " ".join([row.url, row.request_excerpt, row.response_excerpt, row.error])
        assert API_KEY not in text, row


@job_path
def test_video_ok_completes(owner_client, gateway_models) -> None:
    job = run_scenario(owner_client, gateway_models, "video_ok")

    assert job["status"] == "completed"
    assert job["error"] is None
    assert job["progress"] == 100
    assert len(job["assets"]) == 1
    asset = job["assets"][0]
    assert asset["kind"] == "video"
    assert asset["mime_type"] == "video/mp4"
    assert asset["duration"] == pytest.approx(fake_gateway.VIDEO_SECONDS, abs=0.2)
    assert hold_status(job) == "captured"


@job_path
def test_video_ok_decodes(owner_client, gateway_models) -> None:
    job = run_scenario(owner_client, gateway_models, "video_ok")
    content = body_of(fetch(owner_client, job["assets"][0]["url"]))

    with av.open(io.BytesIO(content)) as container:
        stream = container.streams.video[0]
        frame = next(container.decode(stream))
        seconds = float(stream.duration * stream.time_base)

    assert (frame.width, frame.height) == (64, 36)
    assert seconds == pytest.approx(fake_gateway.VIDEO_SECONDS, abs=0.2)


@job_path
def test_video_ok_calls_redacted(owner_client, gateway_models) -> None:
    job = run_scenario(owner_client, gateway_models, "video_ok")
    rows = call_rows(job)

    assert [row.method for row in rows] == ["POST", "STREAM", "GET"]
    assert [row.status for row in rows] == [200, 200, 200]
    assert "sig=***" in rows[2].url
    assert "sig=REDACTED" not in rows[1].response_excerpt
    assert_redacted(job)


@job_path
def test_image_ok_two_assets(owner_client, gateway_models) -> None:
    job = run_scenario(owner_client, gateway_models, "image_ok")

    assert job["status"] == "completed"
    assert [asset["mime_type"] for asset in job["assets"]] == ["image/png"] * 2
    assert {asset["width"] for asset in job["assets"]} == {48}
    assert hold_status(job) == "captured"


@job_path
def test_error_chunk_fails(owner_client, gateway_models) -> None:
    with FakeSora2("error_chunk_after_progress") as fake:
        gateway_models(fake)
        job = run_job(owner_client)
        submits = fake.count("POST", "/v1/chat/completions")

    assert job["status"] == "failed"
    assert job["error"]["code"] == "provider_timeout"
    assert fake_gateway.TIMEOUT_MESSAGE in job["error"]["message"]
    assert submits == 1
    assert hold_status(job) == "released"
    assert_redacted(job)


@job_path
def test_error_chunk_chinese(owner_client, gateway_models) -> None:
    job = run_scenario(
        owner_client,
        gateway_models,
        "error_chunk_after_progress",
        error_message=CHINESE_ERROR,
    )

    assert job["status"] == "failed"
    assert job["error"]["code"] == "provider_error"
    assert job["error"]["message"].endswith(CHINESE_ERROR)


@job_path
def test_refusal_message_chinese(owner_client, gateway_models) -> None:
    job = run_scenario(owner_client, gateway_models, "refusal")

    assert job["status"] == "failed"
    assert job["error"]["code"] == "provider_rejected"
    assert job["error"]["message"] == REFUSAL_TEXT
    assert hold_status(job) == "released"


@job_path
def test_server_error_retried(owner_client, gateway_models) -> None:
    with FakeSora2("server_error") as fake:
        gateway_models(fake)
        job = run_job(owner_client)
        queued = Job.objects.get(pk=job["id"])

        assert job["status"] == "queued"
        assert job["error"]["code"] == "provider_error"
        assert queued.run_after > timezone.now()
        assert hold_status(job) == "held"

        fake.scenario = "video_ok"
        Job.objects.filter(pk=job["id"]).update(run_after=timezone.now())
        Worker(burst=True).run()

    job = owner_client.get(f"/api/jobs/{job['id']}").data
    assert job["status"] == "completed"
    assert hold_status(job) == "captured"
    assert_redacted(job)


@job_path
def test_auth_fails(owner_client, gateway_models) -> None:
    job = run_scenario(owner_client, gateway_models, "auth")

    assert job["status"] == "failed"
    assert job["error"]["code"] == "provider_auth"
    assert "Invalid API key" in job["error"]["message"]
    assert hold_status(job) == "released"


@job_path
def test_missing_key_fails(owner_client, gateway_models) -> None:
    with FakeSora2("video_ok") as fake:
        gateway_models(fake, api_key="")
        job = run_job(owner_client)

    assert job["status"] == "failed"
    assert job["error"]["code"] == "provider_auth"
    assert "Not authenticated" in job["error"]["message"]


@job_path
def test_rate_limited_requeued(owner_client, gateway_models, settings) -> None:
    settings.RETRY_BASE_SECONDS = 0.1
    job = run_scenario(owner_client, gateway_models, "rate_limited")
    wait = Job.objects.get(pk=job["id"]).run_after - timezone.now()

    assert job["status"] == "queued"
    assert job["error"]["code"] == "provider_rate_limited"
    assert wait > timedelta(seconds=6)
    assert wait <= timedelta(seconds=7)
    assert hold_status(job) == "held"


@job_path
def test_cut_stream_fails(owner_client, gateway_models) -> None:
    with FakeSora2("cut_without_done") as fake:
        gateway_models(fake)
        job = run_job(owner_client)
        submits = fake.count("POST", "/v1/chat/completions")

    assert job["status"] == "failed"
    assert job["error"]["code"] == "provider_error"
    assert "ended before the result" in job["error"]["message"]
    assert submits == 1
    assert hold_status(job) == "released"


@job_path
def test_finish_without_done_completes(owner_client, gateway_models) -> None:
    job = run_scenario(owner_client, gateway_models, "finish_without_done")

    assert job["status"] == "completed"
    assert len(job["assets"]) == 1
    assert hold_status(job) == "captured"


@job_path
def test_malformed_line_skipped(owner_client, gateway_models, caplog) -> None:
    job = run_scenario(owner_client, gateway_models, "malformed_line")
    skipped = [r for r in caplog.records if "line skipped" in r.getMessage()]

    assert job["status"] == "completed"
    assert len(job["assets"]) == 1
    assert len(skipped) == 2
    assert {record.levelname for record in skipped} == {"WARNING"}


@job_path
def test_result_403_fails(owner_client, gateway_models) -> None:
    job = run_scenario(owner_client, gateway_models, "result_403")

    assert job["status"] == "failed"
    assert job["error"]["code"] == "result_download_failed"
    assert hold_status(job) == "released"


@job_path
def test_result_html_invalid(owner_client, gateway_models) -> None:
    job = run_scenario(owner_client, gateway_models, "result_html")

    assert job["status"] == "failed"
    assert job["error"]["code"] == "result_invalid"
    assert job["assets"] == []
    assert hold_status(job) == "released"


@job_path
def test_reference_sent_inline(catalog, owner_client, gateway_models) -> None:
    source = run_job(owner_client, "local-image", {"size": "512x512"})
    asset_id = source["assets"][0]["id"]
    with FakeSora2("image_ref") as fake:
        gateway_models(fake)
        job = run_job(owner_client, IMAGE_MODEL, {"reference_asset": asset_id})
        text = fake.requests[0].json()["messages"][-1]["content"][0]

    stored = Asset.objects.get(pk=asset_id).blob.file.read()
    assert job["status"] == "completed"
    assert fake.reference == stored
    assert fake.reference_mime == "image/png"
    assert text == {"type": "text", "text": PROMPT}
    encoded = base64.b64encode(stored).decode()
    for row in call_rows(job):
        assert encoded not in row.request_excerpt


class ProgressSampler(threading.Thread):
    """Read a job's progress from its own connection until the job finishes."""

    def __init__(self, action=None) -> None:
        super().__init__(daemon=True)
        self.seen: list[int] = []
        self.action = action
        self.acted_at: float | None = None
        self.worker_done_at: float | None = None
        self.finished = threading.Event()

    def run(self) -> None:
        try:
            while not self.finished.wait(0.05):
                job = Job.objects.order_by("-created_at").first()
                if job is None:
                    continue
                self.seen.append(job.progress)
                if self.action and self.acted_at is None and job.progress >= 1:
                    self.action(job)
                    self.acted_at = time.monotonic()
        finally:
            connection.close()

    def stop(self) -> None:
        self.finished.set()
        self.join(5)


def sampled_run(client, action=None) -> tuple[dict, ProgressSampler]:
    """Run the worker on a new video job while a sampler watches its progress."""
    sampler = ProgressSampler(action)
    response = submit(client, model=VIDEO_MODEL, prompt=PROMPT, params={})
    sampler.start()
    try:
        Worker(burst=True).run()
        sampler.worker_done_at = time.monotonic()
    finally:
        sampler.stop()
    return client.get(f"/api/jobs/{response.data['id']}").data, sampler


# Progress writes are coalesced to one a second, so the fake paces its events
# a little slower than that and every value reaches the job.
@job_path
def test_progress_written_to_job(owner_client, gateway_models) -> None:
    with FakeSora2("video_ok", pause=1.1) as fake:
        gateway_models(fake)
        job, sampler = sampled_run(owner_client)

    assert job["status"] == "completed"
    assert 36 in sampler.seen
    assert 81 in sampler.seen


@job_path
def test_cancel_stops_stream(owner_client, gateway_models) -> None:
    def cancel(job: Job) -> None:
        response = owner_client.post(f"/api/jobs/{job.pk}/cancel")
        assert response.status_code == 200

    with FakeSora2("slow", slow_pause=5.0) as fake:
        gateway_models(fake)
        job, sampler = sampled_run(owner_client, cancel)
        stopped_after = sampler.worker_done_at - sampler.acted_at
        submits = fake.count("POST", "/v1/chat/completions")

    assert job["status"] == "canceled"
    assert stopped_after < 2.0
    assert submits == 1
    assert hold_status(job) == "released"


@job_path
def test_read_timeout_fails(owner_client, gateway_models, settings) -> None:
    settings.SORA_READ_TIMEOUT = 0.3
    started = time.monotonic()
    job = run_scenario(owner_client, gateway_models, "slow", slow_pause=3.0)

    assert job["status"] == "failed"
    assert job["error"]["code"] == "provider_timeout"
    assert time.monotonic() - started < 2.5
    assert hold_status(job) == "released"


@job_path
def test_refusal_unchanged_for_chinese_user(owner, owner_client, gateway_models):
    UserPreference.objects.filter(user=owner).update(language="zh-hans")

    job = run_scenario(owner_client, gateway_models, "refusal")

    assert job["error"]["code"] == "provider_rejected"
    assert job["error"]["message"] == REFUSAL_TEXT


@job_path
def test_error_chunk_chinese_user(owner, owner_client, gateway_models) -> None:
    UserPreference.objects.filter(user=owner).update(language="zh-hans")

    job = run_scenario(
        owner_client,
        gateway_models,
        "error_chunk_after_progress",
        error_message=CHINESE_ERROR,
    )

    assert job["error"]["code"] == "provider_error"
    assert job["error"]["message"] == f"服务商报告错误：{CHINESE_ERROR}"  # noqa: RUF001
