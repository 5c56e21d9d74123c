"""ModelScope jobs from submit to stored asset, against a fake ModelScope server."""

import base64
import hashlib
import itertools
import threading
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from billing.models import Hold
from billing.services import topup
from generation.models import Job, ProviderCall
from generation.services import cancel_job
from generation.tests.factories import body_of, fetch, submit
from generation.worker import Worker
from providers.adapters.base import GenerationRequest, ReferenceImage
from providers.adapters.modelscope import ModelScopeAdapter, submit_body
from providers.catalog import DEFAULT_CATALOG, load_catalog
from providers.models import ModelSpec, Provider
from providers.tests.fakes.media import png_bytes
from providers.tests.fakes.modelscope import (
    REFUSED_MESSAGE,
    SUBMIT_PATH,
    TASK_PREFIX,
    ModelScopeFake,
)
from providers.tests.fakes.scripted import RecordingContext

API_KEY = "ms-test-key-5f2c9a71"
REMOTE_MODEL = "MusePublic/489_ckpt_FLUX_1"
PROMPT = "a lighthouse at dusk"

# The worker closes connections it finds inside a transaction, so every test
# commits for real.
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def fast_polls(settings):
    settings.MODELSCOPE_POLL_SECONDS = 0.05
    settings.MODELSCOPE_POLL_MAX_SECONDS = 0.1


@pytest.fixture
def wallet(owner):
    topup(owner, 1000, "test")


def add_model(fake: ModelScopeFake, deadline_seconds: int = 30) -> ModelSpec:
    provider = Provider.objects.create(
        name="modelscope-fake",
        kind=Provider.Kind.MODELSCOPE,
        base_url=fake.url,
        api_key=API_KEY,
        enabled=True,
    )
    return ModelSpec.objects.create(
        name="flux-fake",
        kind=ModelSpec.Kind.IMAGE,
        provider=provider,
        remote_name=REMOTE_MODEL,
        price=20,
        sizes=["512x512", "1024x1024"],
        deadline_seconds=deadline_seconds,
        supports=["negative_prompt", "steps", "guidance"],
    )


def run_job(client, fake: ModelScopeFake, params=None, deadline_seconds=30) -> dict:
    """Submit one job to a fresh fake-backed model, run the worker, return its JSON."""
    add_model(fake, deadline_seconds)
    response = submit(client, model="flux-fake", prompt=PROMPT, params=params or {})
    assert response.status_code == 201, response.data
    Worker(burst=True).run()
    return client.get(f"/api/jobs/{response.data['id']}").data


def hold_status(job: dict) -> str:
    return Hold.objects.get(job_id=job["id"]).status


def header(recorded, name: str) -> str | None:
    headers = {key.lower(): value for key, value in recorded.headers.items()}
    return headers.get(name.lower())


def requests_to(fake: ModelScopeFake, method: str, prefix: str) -> list:
    return [
        r for r in fake.requests if r.method == method and r.path.startswith(prefix)
    ]


def call_texts(job: dict) -> list[str]:
    rows = ProviderCall.objects.filter(job_id=job["id"])
    return [
        " ".join([r.url, r.request_excerpt, r.response_excerpt, r.error]) for r in rows
    ]


def assert_calls_redacted(job: dict) -> None:
    texts = call_texts(job)
    assert texts
    for text in texts:
        assert API_KEY not in text


def assert_stored_png(client, job: dict, fake: ModelScopeFake) -> None:
    assert len(job["assets"]) == 1
    asset = job["assets"][0]
    assert asset["mime_type"] == "image/png"
    assert asset["sha256"] == hashlib.sha256(fake.png).hexdigest()
    assert body_of(fetch(client, asset["url"])) == fake.png


def make_due(job: dict) -> None:
    Job.objects.filter(pk=job["id"]).update(run_after=timezone.now())


def test_ok_completes(owner_client, wallet):
    with ModelScopeFake("ok") as fake:
        job = run_job(owner_client, fake)

        assert job["status"] == "completed"
        assert job["error"] is None
        assert job["progress"] == 100
        assert_stored_png(owner_client, job, fake)
    assert hold_status(job) == Hold.Status.CAPTURED
    assert fake.count("POST", SUBMIT_PATH) == 1
    assert fake.count("GET", TASK_PREFIX) == 3
    assert_calls_redacted(job)


def test_ok_sends_headers(owner_client, wallet):
    with ModelScopeFake("ok") as fake:
        run_job(owner_client, fake)

    submitted = requests_to(fake, "POST", SUBMIT_PATH)[0]
    assert header(submitted, "X-ModelScope-Async-Mode") == "true"
    assert header(submitted, "Authorization") == f"Bearer {API_KEY}"
    for poll in requests_to(fake, "GET", TASK_PREFIX):
        assert header(poll, "X-ModelScope-Task-Type") == "image_generation"
        assert header(poll, "Authorization") == f"Bearer {API_KEY}"
        assert header(poll, "X-ModelScope-Async-Mode") is None


def test_ok_stores_task_id(owner_client, wallet):
    with ModelScopeFake("ok") as fake:
        job = run_job(owner_client, fake)

    task_id = requests_to(fake, "GET", TASK_PREFIX)[0].path.removeprefix(TASK_PREFIX)
    assert Job.objects.get(pk=job["id"]).remote_task_id == task_id
    assert task_id in fake.tasks


def test_ok_records_calls(owner_client, wallet):
    with ModelScopeFake("ok") as fake:
        job = run_job(owner_client, fake)

    calls = list(ProviderCall.objects.filter(job_id=job["id"]))
    submits = [c for c in calls if c.method == "POST"]
    assert len(submits) == 1
    assert submits[0].url == f"{fake.url}{SUBMIT_PATH}"
    assert submits[0].status == 200
    assert REMOTE_MODEL in submits[0].request_excerpt
    assert "task_id" in submits[0].response_excerpt
    polls = [c for c in calls if c.url.startswith(f"{fake.url}{TASK_PREFIX}")]
    assert len(polls) == 3
    downloads = [c for c in calls if "/output/" in c.url]
    assert len(downloads) == 1


def test_params_in_submit_body(owner_client, wallet):
    params = {
        "size": "1024x1024",
        "seed": 42,
        "steps": 30,
        "guidance": 3.5,
        "negative_prompt": "blurry, text",
    }
    with ModelScopeFake("ok") as fake:
        job = run_job(owner_client, fake, params=params)

    assert job["status"] == "completed"
    body = requests_to(fake, "POST", SUBMIT_PATH)[0].json()
    assert body == {"model": REMOTE_MODEL, "prompt": PROMPT, **params}


def test_default_params_in_submit_body(owner_client, wallet):
    with ModelScopeFake("ok") as fake:
        job = run_job(owner_client, fake)

    body = requests_to(fake, "POST", SUBMIT_PATH)[0].json()
    assert body["size"] == "512x512"
    assert body["seed"] == job["params"]["seed"]
    assert "steps" not in body
    assert "negative_prompt" not in body
    assert "image_url" not in body


def test_slow_progress_rises(owner_client, wallet, settings):
    # A wider backoff range keeps the growth of the poll gaps above timing noise.
    settings.MODELSCOPE_POLL_MAX_SECONDS = 0.15
    samples: list[int] = []
    done = threading.Event()

    def sample_progress(job_id) -> None:
        while not done.is_set():
            samples.append(Job.objects.get(pk=job_id).progress)
            time.sleep(0.02)
        connection.close()

    with ModelScopeFake("slow") as fake:
        add_model(fake, deadline_seconds=6)
        job_id = submit(owner_client, model="flux-fake", prompt=PROMPT).data["id"]
        sampler = threading.Thread(target=sample_progress, args=(job_id,))
        sampler.start()
        Worker(burst=True).run()
        done.set()
        sampler.join()
        job = owner_client.get(f"/api/jobs/{job_id}").data
        poll_times = fake.polls()

    assert job["status"] == "completed"
    assert fake.count("POST", SUBMIT_PATH) == 1
    assert len(poll_times) == 17
    assert samples == sorted(samples)
    waiting = {value for value in samples if 5 < value < 90}
    assert len(waiting) >= 2
    gaps = [later - earlier for earlier, later in itertools.pairwise(poll_times)]
    assert min(gaps[-3:]) > gaps[0]
    assert hold_status(job) == Hold.Status.CAPTURED


def test_failed_task(owner_client, wallet):
    with ModelScopeFake("failed") as fake:
        job = run_job(owner_client, fake)

    assert job["status"] == "failed"
    assert job["error"]["code"] == "provider_error"
    assert "Model inference failed" in job["error"]["message"]
    assert job["assets"] == []
    assert hold_status(job) == Hold.Status.RELEASED
    assert fake.count("POST", SUBMIT_PATH) == 1
    assert_calls_redacted(job)


def test_refused_task(owner_client, wallet):
    with ModelScopeFake("refused") as fake:
        job = run_job(owner_client, fake)

    assert job["status"] == "failed"
    assert job["error"]["code"] == "provider_rejected"
    assert REFUSED_MESSAGE in job["error"]["message"]
    assert "Change the prompt" in job["error"]["message"]
    assert hold_status(job) == Hold.Status.RELEASED
    assert fake.count("POST", SUBMIT_PATH) == 1
    assert_calls_redacted(job)


def test_auth_fails(owner_client, wallet):
    with ModelScopeFake("auth") as fake:
        job = run_job(owner_client, fake)

    assert job["status"] == "failed"
    assert job["error"]["code"] == "provider_auth"
    assert "API key" in job["error"]["message"]
    assert API_KEY not in job["error"]["message"]
    assert hold_status(job) == Hold.Status.RELEASED
    assert fake.count("POST", SUBMIT_PATH) == 1
    assert fake.count("GET", TASK_PREFIX) == 0
    assert_calls_redacted(job)


def test_rate_limited_retries(owner_client, wallet):
    with ModelScopeFake("rate_limited") as fake:
        before = timezone.now()
        job = run_job(owner_client, fake)
        row = Job.objects.get(pk=job["id"])

        assert job["status"] == "queued"
        assert job["error"]["code"] == "provider_rate_limited"
        assert row.run_after >= before + timedelta(seconds=7)
        assert row.remote_task_id == ""
        assert hold_status(job) == Hold.Status.HELD
        assert fake.count("POST", SUBMIT_PATH) == 1
        assert fake.count("GET", TASK_PREFIX) == 0
        assert_calls_redacted(job)

        fake.scenario = "ok"
        make_due(job)
        Worker(burst=True).run()
        job = owner_client.get(f"/api/jobs/{job['id']}").data

        assert job["status"] == "completed"
        assert job["error"] is None
        assert_stored_png(owner_client, job, fake)
    assert fake.count("POST", SUBMIT_PATH) == 2
    assert hold_status(job) == Hold.Status.CAPTURED


def test_server_error_retries(owner_client, wallet):
    with ModelScopeFake("server_error") as fake:
        before = timezone.now()
        job = run_job(owner_client, fake)
        row = Job.objects.get(pk=job["id"])

        assert job["status"] == "queued"
        assert job["error"]["code"] == "provider_error"
        assert row.run_after > before
        assert hold_status(job) == Hold.Status.HELD
        assert fake.count("POST", SUBMIT_PATH) == 1
        assert_calls_redacted(job)

        fake.scenario = "ok"
        make_due(job)
        Worker(burst=True).run()
        job = owner_client.get(f"/api/jobs/{job['id']}").data

        assert job["status"] == "completed"
        assert job["error"] is None
        assert_stored_png(owner_client, job, fake)
    assert fake.count("POST", SUBMIT_PATH) == 2
    assert hold_status(job) == Hold.Status.CAPTURED


def test_poll_error_resumes_task(owner_client, wallet):
    with ModelScopeFake("poll_error_once") as fake:
        job = run_job(owner_client, fake)
        task_id = Job.objects.get(pk=job["id"]).remote_task_id

        assert job["status"] == "queued"
        assert job["error"]["code"] == "provider_error"
        assert task_id in fake.tasks
        assert hold_status(job) == Hold.Status.HELD

        make_due(job)
        Worker(burst=True).run()
        job = owner_client.get(f"/api/jobs/{job['id']}").data

        assert job["status"] == "completed"
        assert job["error"] is None
        assert_stored_png(owner_client, job, fake)
    assert fake.count("POST", SUBMIT_PATH) == 1
    assert fake.count("GET", f"{TASK_PREFIX}{task_id}") == 4
    assert hold_status(job) == Hold.Status.CAPTURED
    assert_calls_redacted(job)


def test_task_not_found_once(owner_client, wallet):
    with ModelScopeFake("task_not_found_once") as fake:
        job = run_job(owner_client, fake)

        assert job["status"] == "completed"
        assert_stored_png(owner_client, job, fake)
    assert fake.count("POST", SUBMIT_PATH) == 1
    assert fake.count("GET", TASK_PREFIX) == 4
    assert hold_status(job) == Hold.Status.CAPTURED
    statuses = ProviderCall.objects.filter(job_id=job["id"]).values_list(
        "status", flat=True
    )
    assert 404 in statuses
    assert_calls_redacted(job)


def test_unknown_task_fails(owner_client, wallet):
    with ModelScopeFake("ok") as fake:
        model = add_model(fake)
        job_id = submit(owner_client, model=model.name, prompt=PROMPT).data["id"]
        orphan(job_id, "no-such-task")
        Worker(burst=True).run()
        job = owner_client.get(f"/api/jobs/{job_id}").data

    assert job["status"] == "failed"
    assert job["error"]["code"] == "provider_error"
    assert "not found" in job["error"]["message"]
    assert fake.count("GET", TASK_PREFIX) == 3
    assert fake.count("POST", SUBMIT_PATH) == 0
    assert hold_status(job) == Hold.Status.RELEASED


def test_never_finishes_times_out(owner_client, wallet):
    with ModelScopeFake("never_finishes") as fake:
        started = time.monotonic()
        job = run_job(owner_client, fake, deadline_seconds=2)
        elapsed = time.monotonic() - started

    assert job["status"] == "failed"
    assert job["error"]["code"] == "provider_timeout"
    assert "within 2 seconds" in job["error"]["message"]
    assert 2 <= elapsed < 4
    assert hold_status(job) == Hold.Status.RELEASED
    assert fake.count("POST", SUBMIT_PATH) == 1
    assert_calls_redacted(job)


def test_result_403_fails(owner_client, wallet):
    with ModelScopeFake("result_403") as fake:
        job = run_job(owner_client, fake)

    assert job["status"] == "failed"
    assert job["error"]["code"] == "result_download_failed"
    assert "expired" in job["error"]["message"]
    assert job["assets"] == []
    assert hold_status(job) == Hold.Status.RELEASED
    assert fake.count("POST", SUBMIT_PATH) == 1
    assert_calls_redacted(job)


def test_result_html_invalid(owner_client, wallet):
    with ModelScopeFake("result_html") as fake:
        job = run_job(owner_client, fake)

    assert job["status"] == "failed"
    assert job["error"]["code"] == "result_invalid"
    assert job["assets"] == []
    assert hold_status(job) == Hold.Status.RELEASED
    assert fake.count("POST", SUBMIT_PATH) == 1
    assert_calls_redacted(job)


def test_sync_reply_completes(owner_client, wallet):
    with ModelScopeFake("sync") as fake:
        job = run_job(owner_client, fake)

        assert job["status"] == "completed"
        assert_stored_png(owner_client, job, fake)
    assert fake.count("POST", SUBMIT_PATH) == 1
    assert fake.count("GET", TASK_PREFIX) == 0
    assert Job.objects.get(pk=job["id"]).remote_task_id == ""
    assert hold_status(job) == Hold.Status.CAPTURED
    assert_calls_redacted(job)


def test_reference_sent_as_data_url():
    png = png_bytes("32x32")
    request = GenerationRequest(
        job_id="job-1",
        kind="image",
        remote_model="Qwen/Qwen-Image-Edit-2509",
        prompt="make it night",
        params={"size": "512x512", "seed": 3},
        reference=ReferenceImage(png, "image/png", 32, 32),
    )

    body = submit_body(request)

    expected = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
    assert body["image_url"] == expected
    assert body["model"] == "Qwen/Qwen-Image-Edit-2509"
    assert body["seed"] == 3


def orphan(job_id, task_id: str) -> None:
    """Make a queued job look like one whose worker died after submitting."""
    Job.objects.filter(pk=job_id).update(
        status=Job.Status.RUNNING,
        attempts=1,
        locked_by="dead-worker",
        locked_until=timezone.now() - timedelta(seconds=1),
        remote_task_id=task_id,
    )


def test_resume_polls_only(owner_client, wallet):
    with ModelScopeFake("ok") as fake:
        model = add_model(fake)
        job_id = submit(owner_client, model=model.name, prompt=PROMPT).data["id"]
        task_id = fake.add_task()
        orphan(job_id, task_id)
        Worker(burst=True).run()
        job = owner_client.get(f"/api/jobs/{job_id}").data

        assert job["status"] == "completed"
        assert_stored_png(owner_client, job, fake)
    assert fake.count("POST", SUBMIT_PATH) == 0
    assert fake.count("GET", f"{TASK_PREFIX}{task_id}") == 3
    assert Job.objects.get(pk=job_id).attempts == 2
    assert hold_status(job) == Hold.Status.CAPTURED


def test_cancel_stops_polling(owner_client, wallet):
    canceled_at: list[float] = []

    def cancel_after_first_poll(job_id) -> None:
        while fake.count("GET", TASK_PREFIX) < 1:
            time.sleep(0.01)
        cancel_job(Job.objects.get(pk=job_id))
        canceled_at.append(time.monotonic())
        connection.close()

    with ModelScopeFake("never_finishes") as fake:
        model = add_model(fake, deadline_seconds=30)
        job_id = submit(owner_client, model=model.name, prompt=PROMPT).data["id"]
        canceler = threading.Thread(target=cancel_after_first_poll, args=(job_id,))
        canceler.start()
        Worker(burst=True).run()
        stopped_at = time.monotonic()
        canceler.join()
        polls_at_stop = fake.count("GET", TASK_PREFIX)
        time.sleep(0.3)
        polls_later = fake.count("GET", TASK_PREFIX)
        job = owner_client.get(f"/api/jobs/{job_id}").data

    assert job["status"] == "canceled"
    assert job["error"] is None
    assert job["assets"] == []
    assert stopped_at - canceled_at[0] < 2
    assert polls_later == polls_at_stop
    assert fake.count("POST", SUBMIT_PATH) == 1
    assert hold_status(job) == Hold.Status.RELEASED


def test_catalog_disabled_without_key(monkeypatch):
    monkeypatch.delenv("MODELSCOPE_API_KEY", raising=False)
    load_catalog(DEFAULT_CATALOG)

    provider = Provider.objects.get(name="modelscope")
    assert provider.kind == Provider.Kind.MODELSCOPE
    assert provider.base_url == "https://api-inference.modelscope.cn"
    assert provider.enabled is False
    assert not ModelSpec.objects.available().filter(provider=provider).exists()


def test_catalog_models_with_key(monkeypatch):
    monkeypatch.setenv("MODELSCOPE_API_KEY", API_KEY)
    load_catalog(DEFAULT_CATALOG)

    models = {
        m.name: m
        for m in ModelSpec.objects.available().filter(provider__name="modelscope")
    }
    assert set(models) == {"flux", "majicflus"}
    assert models["flux"].remote_name == REMOTE_MODEL
    assert models["majicflus"].remote_name == "MAILAND/majicflus_v1"
    for model in models.values():
        assert model.price == 20
        assert model.deadline_seconds == 180
        assert all(
            64 <= int(side) <= 1024 for size in model.sizes for side in size.split("x")
        )


@pytest.mark.parametrize(("stored", "first"), [(60, 60), (0, 5), (95, 89)])
def test_resumed_task_progress_floor(stored, first):
    with ModelScopeFake("slow") as fake:
        request = GenerationRequest(
            job_id="resumed-job",
            kind="image",
            remote_model=REMOTE_MODEL,
            prompt=PROMPT,
            params={"size": "512x512"},
            base_url=fake.url,
            api_key=API_KEY,
            provider_name="modelscope-fake",
            limits={"deadline_seconds": 30},
            remote_task_id=fake.add_task(),
            progress=stored,
        )
        context = RecordingContext()
        files = ModelScopeAdapter().generate(request, context)

    assert len(files) == 1
    assert context.percents[0] == first
    assert min(context.percents) == first
    assert context.percents == sorted(context.percents)
    assert fake.count("POST", SUBMIT_PATH) == 0
