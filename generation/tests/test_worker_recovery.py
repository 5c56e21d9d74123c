"""Jobs end exactly once when their worker is killed or stopped, or they are canceled.

Every test runs real `runworker` processes on the test database. Vendors are
fakes on loopback, started in this process and reached by the workers over HTTP.
"""

import signal
import time
from collections import Counter

import pytest

from assets.models import Asset
from billing.models import Hold, LedgerEntry
from billing.services import topup
from generation.models import Job, WorkerProcess
from generation.tests.factories import submit
from generation.tests.processes import (
    MODELSCOPE_ENV,
    MODELSCOPE_MODEL,
    add_modelscope_model,
    wait_for,
    worker_launcher,
)
from generation.worker import HAND_BACK_SECONDS
from providers.adapters.sora2_chat import CHAT_PATH
from providers.models import ModelSpec, Provider
from providers.tests.fakes.modelscope import SUBMIT_PATH, ModelScopeFake
from providers.tests.fakes.sora2_chat import FakeSora2

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

SORA_MODEL = "sora-fake-video"
SORA_PARAMS = {"size": "1280x720", "duration": 10}
IMAGE_PARAMS = {"size": "512x512"}
RESUMED_JOBS = 20


@pytest.fixture
def start_worker(tmp_path):
    """Start `runworker` processes, all killed at the end of the test."""
    with worker_launcher(tmp_path) as start:
        yield start


@pytest.fixture
def wallet(owner):
    topup(owner, 1_000_000, "test credit")


def add_sora_model(fake: FakeSora2) -> None:
    provider = Provider.objects.create(
        name="sora2-fake",
        kind=Provider.Kind.SORA2_CHAT,
        base_url=fake.url,
        api_key="test-key",
        enabled=True,
    )
    ModelSpec.objects.create(
        name=SORA_MODEL,
        kind=ModelSpec.Kind.VIDEO,
        provider=provider,
        remote_name="sora-video-10s",
        price=150,
        sizes=["1280x720"],
        durations=[10],
        deadline_seconds=60,
    )


def submit_job(client, model: str, params: dict) -> str:
    response = submit(client, model=model, params=params)
    assert response.status_code == 201, response.data
    return response.data["id"]


def all_due(job_ids: list) -> bool:
    return Job.objects.due().filter(pk__in=job_ids).count() == len(job_ids)


def settlements(job_id) -> Counter:
    """Count the capture and release ledger entries of the job's hold."""
    entries = LedgerEntry.objects.filter(
        hold__job_id=job_id,
        kind__in=[LedgerEntry.Kind.CAPTURE, LedgerEntry.Kind.RELEASE],
    )
    return Counter(entries.values_list("kind", flat=True))


def worker_row(worker) -> WorkerProcess:
    return WorkerProcess.objects.get(pid=worker.pid)


# Crashes


def test_killed_modelscope_jobs_resume_tasks(start_worker, owner_client, wallet):
    with ModelScopeFake("slow") as fake:
        add_modelscope_model(fake.url)
        job_ids = [
            submit_job(owner_client, MODELSCOPE_MODEL, IMAGE_PARAMS)
            for _ in range(RESUMED_JOBS)
        ]
        crashed = start_worker("--concurrency", "20", **MODELSCOPE_ENV)
        jobs = Job.objects.filter(pk__in=job_ids)
        wait_for(
            lambda: not jobs.filter(remote_task_id="").exists(),
            timeout=30,
            description="every job storing its task id",
        )
        crashed.signal(signal.SIGKILL)
        crashed.wait(timeout=5)
        killed_at = time.monotonic()
        statuses_at_kill = Counter(jobs.values_list("status", flat=True))
        task_ids_at_kill = dict(jobs.values_list("pk", "remote_task_id"))

        wait_for(
            lambda: all_due(job_ids), timeout=10, description="every lease expiring"
        )
        resumed = start_worker("--burst", "--concurrency", "20", **MODELSCOPE_ENV)
        under_resumed = jobs.filter(locked_by__contains=f":{resumed.pid}:")
        wait_for(
            lambda: under_resumed.count() == RESUMED_JOBS,
            timeout=20,
            description="every job running under the second worker",
        )
        recovery_seconds = time.monotonic() - killed_at
        print(f"recovery: all jobs running again {recovery_seconds:.2f} s after kill")
        exit_code = resumed.wait(timeout=60)
        submits = fake.count("POST", SUBMIT_PATH)
        fake_task_ids = set(fake.tasks)

    assert exit_code == 0, resumed.log()
    assert statuses_at_kill == {Job.Status.RUNNING: RESUMED_JOBS}
    assert recovery_seconds < 15
    assert submits == RESUMED_JOBS
    assert set(task_ids_at_kill.values()) == fake_task_ids
    assert dict(jobs.values_list("pk", "remote_task_id")) == task_ids_at_kill
    assert resumed.log().count("modelscope task resumed") == RESUMED_JOBS
    assert Counter(jobs.values_list("status", flat=True)) == {
        Job.Status.COMPLETED: RESUMED_JOBS
    }
    assert Counter(jobs.values_list("attempts", flat=True)) == {2: RESUMED_JOBS}
    assets_per_job = Counter(
        Asset.objects.filter(source_job__in=job_ids).values_list(
            "source_job_id", flat=True
        )
    )
    assert len(assets_per_job) == RESUMED_JOBS
    assert set(assets_per_job.values()) == {1}
    for job_id in job_ids:
        assert settlements(job_id) == {LedgerEntry.Kind.CAPTURE: 1}, job_id
    holds = Hold.objects.filter(job__in=job_ids)
    assert Counter(holds.values_list("status", flat=True)) == {
        Hold.Status.CAPTURED: RESUMED_JOBS
    }


def test_killed_stream_job_submits_again(start_worker, owner_client, wallet):
    # Two seconds between events keep the first stream open until the kill.
    with FakeSora2("video_ok", pause=2.0) as fake:
        add_sora_model(fake)
        job_id = submit_job(owner_client, SORA_MODEL, SORA_PARAMS)
        crashed = start_worker("--concurrency", "4", WORKER_LEASE_SECONDS="1")
        wait_for(
            lambda: fake.count("POST", CHAT_PATH) == 1,
            timeout=20,
            description="the first stream",
        )
        crashed.signal(signal.SIGKILL)
        crashed.wait(timeout=5)
        wait_for(
            lambda: all_due([job_id]), timeout=10, description="the lease expiring"
        )

        # The second stream runs at full speed.
        fake.pause = 0.02
        resumed = start_worker("--burst", "--concurrency", "4")
        exit_code = resumed.wait(timeout=30)
        submits = fake.count("POST", CHAT_PATH)

    job = Job.objects.get(pk=job_id)
    assert exit_code == 0, resumed.log()
    assert submits == 2
    assert job.status == Job.Status.COMPLETED
    assert job.attempts == 2
    assert Asset.objects.filter(source_job=job).count() == 1
    assert Hold.objects.get(job=job).status == Hold.Status.CAPTURED
    assert settlements(job_id) == {LedgerEntry.Kind.CAPTURE: 1}


def test_killed_stream_job_fails_worker_lost(
    start_worker, owner_client, wallet, settings
):
    settings.JOB_MAX_ATTEMPTS = 1
    with FakeSora2("video_ok", pause=2.0) as fake:
        add_sora_model(fake)
        job_id = submit_job(owner_client, SORA_MODEL, SORA_PARAMS)
        crashed = start_worker("--concurrency", "4", WORKER_LEASE_SECONDS="1")
        wait_for(
            lambda: fake.count("POST", CHAT_PATH) == 1,
            timeout=20,
            description="the first stream",
        )
        crashed.signal(signal.SIGKILL)
        crashed.wait(timeout=5)
        wait_for(
            lambda: all_due([job_id]), timeout=10, description="the lease expiring"
        )

        resumed = start_worker("--burst", "--concurrency", "4")
        exit_code = resumed.wait(timeout=30)
        submits = fake.count("POST", CHAT_PATH)

    data = owner_client.get(f"/api/jobs/{job_id}").data
    assert exit_code == 0, resumed.log()
    assert submits == 1
    assert data["status"] == "failed"
    assert data["error"]["code"] == "worker_lost"
    assert data["assets"] == []
    assert Hold.objects.get(job_id=job_id).status == Hold.Status.RELEASED
    assert settlements(job_id) == {LedgerEntry.Kind.RELEASE: 1}


def test_late_renewal_never_reclaims_own_job(start_worker, catalog, owner_client):
    # The control loop renews leases only every 2 s here, so the 1 s lease of
    # the running job expires while this live worker still runs it. The first
    # progress report, which also renews the lease, comes after 3 s.
    job_id = submit_job(owner_client, "local-image", IMAGE_PARAMS)
    worker = start_worker(
        "--burst",
        "--concurrency",
        "4",
        WORKER_LEASE_SECONDS="1",
        WORKER_CANCEL_CHECK_SECONDS="2",
        LOCAL_RENDER_DELAY_SECONDS="6",
    )

    exit_code = worker.wait(timeout=30)

    job = Job.objects.get(pk=job_id)
    assert exit_code == 0, worker.log()
    assert worker.claimed_job_ids() == [job_id]
    assert job.status == Job.Status.COMPLETED
    assert job.attempts == 1
    assert Asset.objects.filter(source_job=job).count() == 1


# Cancel


def test_cancel_closes_running_stream(start_worker, owner_client, wallet):
    with FakeSora2("slow") as fake:
        add_sora_model(fake)
        job_id = submit_job(owner_client, SORA_MODEL, SORA_PARAMS)
        worker = start_worker("--concurrency", "4")
        wait_for(
            lambda: fake.count("POST", CHAT_PATH) == 1,
            timeout=20,
            description="the stream",
        )
        canceled_at = time.monotonic()
        response = owner_client.post(f"/api/jobs/{job_id}/cancel")
        wait_for(
            lambda: fake.closed_streams == 1,
            timeout=10,
            description="the worker closing the stream",
        )
        close_seconds = time.monotonic() - canceled_at
        print(f"cancel: stream closed {close_seconds:.2f} s after the cancel")
        worker.wait_for_log("job lost its lease", timeout=5)

    job = Job.objects.get(pk=job_id)
    assert response.status_code == 200
    assert response.data["status"] == "canceled"
    assert close_seconds < 2
    assert job.status == Job.Status.CANCELED
    assert not Asset.objects.filter(source_job=job).exists()
    assert Hold.objects.get(job=job).status == Hold.Status.RELEASED
    assert settlements(job_id) == {LedgerEntry.Kind.RELEASE: 1}


# Shutdown


def test_sigterm_lets_job_finish(start_worker, catalog, owner_client):
    job_id = submit_job(owner_client, "local-image", IMAGE_PARAMS)
    worker = start_worker(
        "--concurrency", "4", "--grace-seconds", "10", LOCAL_RENDER_DELAY_SECONDS="2"
    )
    worker.wait_for_log("job claimed")

    worker.signal(signal.SIGTERM)

    assert worker.wait(timeout=15) == 0, worker.log()
    job = Job.objects.get(pk=job_id)
    assert job.status == Job.Status.COMPLETED
    assert Asset.objects.filter(source_job=job).count() == 1
    assert worker_row(worker).stopped_at is not None


def test_sigterm_hands_back_job_after_grace(start_worker, catalog, owner_client):
    job_id = submit_job(owner_client, "local-image", IMAGE_PARAMS)
    # The renderer sleeps 15 s before its first progress report, where a job
    # would notice the stop, so the worker hands the job back itself.
    worker = start_worker(
        "--concurrency", "4", "--grace-seconds", "1", LOCAL_RENDER_DELAY_SECONDS="30"
    )
    worker.wait_for_log("job claimed")

    worker.signal(signal.SIGTERM)
    stopped_at = time.monotonic()
    exit_code = worker.wait(timeout=15)
    exit_seconds = time.monotonic() - stopped_at
    print(f"shutdown: worker exited {exit_seconds:.2f} s after SIGTERM")

    job = Job.objects.get(pk=job_id)
    assert exit_code == 0, worker.log()
    # The grace period, the wait for jobs to hand themselves back, then up to a
    # second each for the control loop and the LISTEN connection to notice.
    assert exit_seconds < 1 + HAND_BACK_SECONDS + 3
    assert job.status == Job.Status.QUEUED
    assert job.attempts == 0
    assert job.locked_by == ""
    assert not Asset.objects.filter(source_job=job).exists()
    assert Hold.objects.get(job=job).status == Hold.Status.HELD
    assert "job handed back" in worker.log()
    assert worker_row(worker).stopped_at is not None


# Registry


def test_worker_row_alive_until_sigterm(start_worker, settings):
    # The idle poll is far longer than the heartbeat interval, and the heartbeat
    # must not wait for it.
    settings.WORKER_HEARTBEAT_SECONDS = 0.5
    worker = start_worker(
        "--concurrency",
        "4",
        WORKER_HEARTBEAT_SECONDS="0.5",
        WORKER_IDLE_POLL_SECONDS="30",
    )
    worker.wait_for_log("worker started")
    wait_for(
        lambda: WorkerProcess.objects.filter(pid=worker.pid).exists(),
        timeout=5,
        description="the worker registering",
    )
    registered = worker_row(worker)
    # Four heartbeat intervals: a row without a heartbeat in three is dead.
    time.sleep(2)
    running = worker_row(worker)
    alive_while_running = running.is_alive()

    worker.signal(signal.SIGTERM)
    exit_code = worker.wait(timeout=10)
    stopped = worker_row(worker)

    assert alive_while_running
    assert running.heartbeat_at > registered.heartbeat_at
    assert running.stopped_at is None
    assert running.queues == "image,video"
    assert running.concurrency == 4
    assert exit_code == 0, worker.log()
    assert stopped.stopped_at is not None
    assert not stopped.is_alive()
