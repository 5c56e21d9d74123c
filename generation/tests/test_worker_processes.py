"""Real `runworker` processes sharing one PostgreSQL queue."""

import signal
import time
from collections import Counter
from pathlib import Path

import pytest
from django.conf import settings

from assets.models import Asset
from billing.models import Hold, LedgerEntry
from generation.models import Job
from generation.services import submit_job
from generation.tests.processes import (
    CLAIM_LINE,
    run_workers_side_by_side,
    worker_launcher,
)

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

JOB_COUNT = 50


@pytest.fixture
def start_worker(tmp_path):
    """Start `runworker` processes, all killed at the end of the test."""
    with worker_launcher(tmp_path) as start:
        yield start


@pytest.fixture
def queued_jobs(catalog, owner) -> list[Job]:
    params = {"size": "512x512"}
    return [
        submit_job(owner, "local-image", f"lighthouse {index}", params)[0]
        for index in range(JOB_COUNT)
    ]


# One test, because each run of 50 jobs takes seconds.
def test_two_workers_run_each_job_once(start_worker, queued_jobs):
    job_ids = {job.pk for job in queued_jobs}
    workers = run_workers_side_by_side(start_worker, 2, job_ids, "--concurrency", "4")
    logs = [worker.log() for worker in workers]

    statuses = Counter(Job.objects.values_list("status", flat=True))
    attempts = Counter(Job.objects.values_list("attempts", flat=True))
    assert statuses == {Job.Status.COMPLETED: JOB_COUNT}
    assert attempts == {1: JOB_COUNT}

    assets_per_job = Counter(Asset.objects.values_list("source_job_id", flat=True))
    assert set(assets_per_job) == job_ids
    assert set(assets_per_job.values()) == {1}
    for asset in Asset.objects.select_related("blob"):
        assert Path(settings.MEDIA_ROOT, asset.blob.file.name).is_file()

    hold_ids = set(Hold.objects.filter(job__in=job_ids).values_list("pk", flat=True))
    hold_statuses = Counter(Hold.objects.values_list("status", flat=True))
    captures = LedgerEntry.objects.filter(kind=LedgerEntry.Kind.CAPTURE)
    captures_per_hold = Counter(captures.values_list("hold_id", flat=True))
    releases = LedgerEntry.objects.filter(kind=LedgerEntry.Kind.RELEASE)
    assert len(hold_ids) == JOB_COUNT
    assert hold_statuses == {Hold.Status.CAPTURED: JOB_COUNT}
    assert set(captures_per_hold) == hold_ids
    assert set(captures_per_hold.values()) == {1}
    assert not releases.exists()

    claims = [CLAIM_LINE.findall(log) for log in logs]
    claims_per_job = Counter(job_id for found in claims for job_id in found)
    assert set(claims_per_job) == {str(job_id) for job_id in job_ids}
    assert set(claims_per_job.values()) == {1}
    assert claims[0], "the first worker claimed no job"
    assert claims[1], "the second worker claimed no job"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_idle_worker_stops_on_signal(start_worker, signum):
    worker = start_worker("--poll-seconds", "0.5")
    worker.wait_for_log("worker started")

    worker.signal(signum)

    assert worker.wait(timeout=5) == 0, worker.log()
    assert "worker stopped" in worker.log()


@pytest.fixture
def queued_job(catalog, owner) -> Job:
    job, _ = submit_job(owner, "local-image", "a lighthouse", {"size": "512x512"})
    return job


# The local renderer sleeps half of this before its first progress report.
SLOW_RENDER = {"LOCAL_RENDER_DELAY_SECONDS": "3"}


def test_first_signal_lets_job_finish(start_worker, queued_job):
    worker = start_worker(**SLOW_RENDER)
    worker.wait_for_log("job claimed")

    worker.signal(signal.SIGTERM)

    assert worker.wait(timeout=20) == 0, worker.log()
    job = Job.objects.get(pk=queued_job.pk)
    assert job.status == Job.Status.COMPLETED
    assert Asset.objects.filter(source_job=job).count() == 1
    assert "worker stopped" in worker.log()


def test_second_signal_hands_job_back(start_worker, queued_job):
    worker = start_worker(**SLOW_RENDER)
    worker.wait_for_log("job claimed")

    worker.signal(signal.SIGTERM)
    # CPython calls a Python signal handler once for all deliveries of a signal
    # that arrive before the handler runs, so the two signals are sent apart.
    time.sleep(0.3)
    worker.signal(signal.SIGTERM)

    assert worker.wait(timeout=20) == 0, worker.log()
    job = Job.objects.get(pk=queued_job.pk)
    assert job.status == Job.Status.QUEUED
    assert job.attempts == 0
    assert job.locked_by == ""
    assert not Asset.objects.filter(source_job=job).exists()
    assert Hold.objects.get(job=job).status == Hold.Status.HELD
    assert "job handed back" in worker.log()


def wait_until_due(job: Job, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not Job.objects.due().filter(pk=job.pk).exists():
        assert time.monotonic() < deadline, "the lease never expired"
        time.sleep(0.1)


def test_killed_worker_job_runs_again_once(start_worker, queued_job):
    crashed = start_worker(LOCAL_RENDER_DELAY_SECONDS="30", WORKER_LEASE_SECONDS="1")
    crashed.wait_for_log("job claimed")
    crashed.signal(signal.SIGKILL)
    crashed.wait(timeout=5)
    wait_until_due(queued_job, timeout=5)

    recovering = start_worker("--burst")
    assert recovering.wait(timeout=60) == 0, recovering.log()

    job = Job.objects.get(pk=queued_job.pk)
    captures = LedgerEntry.objects.filter(hold__job=job, kind="capture")
    releases = LedgerEntry.objects.filter(hold__job=job, kind="release")
    assert job.status == Job.Status.COMPLETED
    assert job.attempts == 2
    assert Asset.objects.filter(source_job=job).count() == 1
    assert captures.count() == 1
    assert not releases.exists()
    assert f"job claimed job={job.pk} provider=local attempt=2" in recovering.log()
