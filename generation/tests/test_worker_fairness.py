"""How workers share the queue and the database: turns, caps, queues and cost.

Claim order and caps are checked with `claim_batch` in this process. The other
tests run real `runworker` processes on the test database.
"""

import signal
import threading
import time
from collections import Counter
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone

from assets.models import Asset
from billing.models import Hold, LedgerEntry
from billing.services import topup
from conftest import make_user
from generation.claims import claim_batch
from generation.models import Job
from generation.services import submit_job
from generation.tests.factories import submit
from generation.tests.processes import (
    MANAGE_WITH_SQL_LOG,
    MODELSCOPE_ENV,
    MODELSCOPE_MODEL,
    add_modelscope_model,
    run_workers_side_by_side,
    wait_for,
    worker_launcher,
)
from generation.tests.sql_log import SQL_LINE
from generation.wakeup import CHANNEL, Listener
from providers.models import ModelSpec, Provider
from providers.tests.fakes.modelscope import ModelScopeFake

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

FAST_MODEL = "local-fast"
FAST_PARAMS = {"size": "64x64"}
MANY_JOBS = 300
IN_FLIGHT_JOBS = 30
IDLE_SECONDS = 10
LISTENER_NAME = "lightsource-test-listener"


@pytest.fixture
def start_worker(tmp_path):
    """Start `runworker` processes, all killed at the end of the test."""
    with worker_launcher(tmp_path) as start:
        yield start


@pytest.fixture
def fast_model(catalog) -> ModelSpec:
    """A 64x64 image model of the offline renderer, the cheapest job there is."""
    return ModelSpec.objects.create(
        name=FAST_MODEL,
        kind=ModelSpec.Kind.IMAGE,
        provider=Provider.objects.get(name="local"),
        remote_name="local-image",
        price=1,
        sizes=["64x64"],
        deadline_seconds=60,
    )


@pytest.fixture
def heavy_user(db):
    return make_user("heavy")


@pytest.fixture
def light_user(db):
    return make_user("light")


def queue_jobs(user, model: ModelSpec, count: int, since) -> list:
    """Insert `count` due jobs of `user`, created a millisecond apart from `since`."""
    jobs = [
        Job(
            owner=user,
            model=model,
            provider=model.provider,
            remote_model=model.remote_name,
            queue=model.kind,
            prompt=f"job {index}",
            params={**FAST_PARAMS, "seed": index},
            created_at=since + timedelta(milliseconds=index),
            run_after=since + timedelta(milliseconds=index),
        )
        for index in range(count)
    ]
    return [job.pk for job in Job.objects.bulk_create(jobs)]


def running_per_owner() -> Counter:
    running = Job.objects.filter(status=Job.Status.RUNNING)
    return Counter(running.values_list("owner__username", flat=True))


@pytest.fixture
def crowded_queue(fast_model, heavy_user, light_user) -> dict:
    """200 jobs of one user, all created before the 5 jobs of another."""
    an_hour_ago = timezone.now() - timedelta(hours=1)
    return {
        "heavy": queue_jobs(heavy_user, fast_model, 200, an_hour_ago),
        "light": queue_jobs(
            light_user, fast_model, 5, an_hour_ago + timedelta(minutes=1)
        ),
    }


# Turns and caps


def test_claim_batch_serves_light_user(crowded_queue, settings):
    settings.USER_MAX_IN_FLIGHT = 0

    claimed = [job.pk for job in claim_batch("w", "image", 20)]

    assert len(claimed) == 20
    assert set(crowded_queue["light"]) <= set(claimed)


def hold_row_locks(job_ids: list, locked: threading.Event, release: threading.Event):
    """In another connection, lock the rows of `job_ids` until `release` is set."""
    try:
        with transaction.atomic():
            rows = Job.objects.filter(pk__in=job_ids).select_for_update()
            assert len(list(rows)) == len(job_ids)
            locked.set()
            release.wait(timeout=30)
    finally:
        connection.close()


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="row locks need PostgreSQL"
)
def test_claim_batch_skips_locked_rows(fast_model, heavy_user, settings):
    settings.USER_MAX_IN_FLIGHT = 0
    an_hour_ago = timezone.now() - timedelta(hours=1)
    job_ids = queue_jobs(heavy_user, fast_model, 20, an_hour_ago)
    first_eight = job_ids[:8]
    locked, release = threading.Event(), threading.Event()
    other_worker = threading.Thread(
        target=hold_row_locks, args=(first_eight, locked, release)
    )
    other_worker.start()
    try:
        assert locked.wait(timeout=10)
        claimed = [job.pk for job in claim_batch("w", "image", 8)]
    finally:
        release.set()
        other_worker.join()

    assert claimed == job_ids[8:16]


def claim_and_hold(claimed: list, ready: threading.Event, release: threading.Event):
    """In another connection, claim 2 jobs and keep them uncommitted until `release`."""
    try:
        with transaction.atomic():
            claimed.extend(job.pk for job in claim_batch("w1", "image", 2))
            ready.set()
            release.wait(timeout=30)
    finally:
        ready.set()
        connection.close()


def claim_beside_uncommitted_claim() -> tuple[list, list]:
    """Claim 2 jobs while another worker's claim of 2 stays uncommitted for 0.5 s.

    Returns the ids the other worker claimed, then the ids claimed here. The
    other claim commits on a timer, so a claim here that waits for it returns.
    """
    first: list = []
    ready, release = threading.Event(), threading.Event()
    other_worker = threading.Thread(target=claim_and_hold, args=(first, ready, release))
    other_worker.start()
    try:
        assert ready.wait(timeout=10)
        threading.Timer(0.5, release.set).start()
        second = [job.pk for job in claim_batch("w2", "image", 2)]
    finally:
        release.set()
        other_worker.join()
    return first, second


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="row locks need PostgreSQL"
)
def test_concurrent_claims_keep_user_cap(fast_model, heavy_user, settings):
    # The first claimer's rows are locked and its jobs not yet committed as
    # running, so the second counts none running and claims past the locked rows.
    settings.USER_MAX_IN_FLIGHT = 2
    queue_jobs(heavy_user, fast_model, 6, timezone.now() - timedelta(hours=1))

    first, second = claim_beside_uncommitted_claim()

    assert len(first) == 2
    assert second == []
    assert running_per_owner() == {"heavy": 2}


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="row locks need PostgreSQL"
)
def test_concurrent_claims_keep_provider_cap(
    fast_model, heavy_user, light_user, settings
):
    settings.USER_MAX_IN_FLIGHT = 0
    settings.PROVIDER_MAX_IN_FLIGHT = 2
    since = timezone.now() - timedelta(hours=1)
    queue_jobs(heavy_user, fast_model, 3, since)
    queue_jobs(light_user, fast_model, 3, since)

    first, second = claim_beside_uncommitted_claim()
    running = Job.objects.filter(status=Job.Status.RUNNING)

    assert len(first) == 2
    assert second == []
    assert running.filter(provider=fast_model.provider).count() == 2


def test_claim_batch_caps_user_in_flight(crowded_queue, settings):
    settings.USER_MAX_IN_FLIGHT = 3

    first = claim_batch("w1", "image", 2)
    after_first = running_per_owner()
    second = claim_batch("w2", "image", 20)
    after_second = running_per_owner()
    third = claim_batch("w3", "image", 20)
    after_third = running_per_owner()

    assert len(first) == 2
    assert after_first == {"heavy": 1, "light": 1}
    assert len(second) == 4
    assert after_second == {"heavy": 3, "light": 3}
    assert third == []
    assert after_third == {"heavy": 3, "light": 3}


def test_claim_batch_caps_provider_in_flight(
    fast_model, heavy_user, light_user, settings
):
    settings.USER_MAX_IN_FLIGHT = 0
    capped = Provider.objects.create(
        name="local-capped", kind=Provider.Kind.LOCAL, enabled=True, max_in_flight=2
    )
    capped_model = ModelSpec.objects.create(
        name="local-capped-image",
        kind=ModelSpec.Kind.IMAGE,
        provider=capped,
        remote_name="local-image",
        sizes=["64x64"],
    )
    since = timezone.now() - timedelta(hours=1)
    queue_jobs(heavy_user, capped_model, 5, since)
    queue_jobs(light_user, capped_model, 5, since)
    queue_jobs(heavy_user, fast_model, 10, since + timedelta(minutes=1))
    running = Job.objects.filter(status=Job.Status.RUNNING)

    first = claim_batch("w1", "image", 20)
    capped_after_first = running.filter(provider=capped).count()
    second = claim_batch("w2", "image", 20)
    capped_after_second = running.filter(provider=capped).count()

    assert len(first) == 12
    assert capped_after_first == 2
    assert second == []
    assert capped_after_second == 2


def test_claim_batch_default_provider_cap(fast_model, heavy_user, settings):
    settings.USER_MAX_IN_FLIGHT = 0
    settings.PROVIDER_MAX_IN_FLIGHT = 4
    queue_jobs(heavy_user, fast_model, 10, timezone.now() - timedelta(hours=1))

    first = claim_batch("w1", "image", 20)
    second = claim_batch("w2", "image", 20)

    assert len(first) == 4
    assert second == []


def test_worker_first_claims_serve_light_user(start_worker, crowded_queue):
    # Slow renders keep every slot busy, so the first 20 claims are one batch.
    worker = start_worker(
        "--concurrency",
        "20",
        USER_MAX_IN_FLIGHT="0",
        LOCAL_RENDER_DELAY_SECONDS="10",
    )
    wait_for(
        lambda: len(worker.claimed_job_ids()) >= 20,
        timeout=20,
        description="20 claims",
    )

    first_claims = worker.claimed_job_ids()[:20]

    assert {str(pk) for pk in crowded_queue["light"]} <= set(first_claims)


# Many workers, one queue


def test_three_workers_run_each_job_once(start_worker, fast_model, owner):
    topup(owner, MANY_JOBS, "test credit")
    job_ids = {
        submit_job(owner, FAST_MODEL, f"tile {index}", FAST_PARAMS)[0].pk
        for index in range(MANY_JOBS)
    }
    workers = run_workers_side_by_side(
        start_worker, 3, job_ids, "--concurrency", "8", USER_MAX_IN_FLIGHT="0"
    )

    jobs = Job.objects.filter(pk__in=job_ids)
    assert Counter(jobs.values_list("status", flat=True)) == {
        Job.Status.COMPLETED: MANY_JOBS
    }
    assert Counter(jobs.values_list("attempts", flat=True)) == {1: MANY_JOBS}

    claims = Counter(pk for worker in workers for pk in worker.claimed_job_ids())
    assert set(claims) == {str(pk) for pk in job_ids}
    assert set(claims.values()) == {1}
    for worker in workers:
        assert worker.claimed_job_ids(), "a worker claimed no job"

    assets_per_job = Counter(
        Asset.objects.filter(source_job__in=job_ids).values_list(
            "source_job_id", flat=True
        )
    )
    assert set(assets_per_job) == job_ids
    assert set(assets_per_job.values()) == {1}

    holds = Hold.objects.filter(job__in=job_ids)
    captures = LedgerEntry.objects.filter(
        hold__job__in=job_ids, kind=LedgerEntry.Kind.CAPTURE
    )
    releases = LedgerEntry.objects.filter(
        hold__job__in=job_ids, kind=LedgerEntry.Kind.RELEASE
    )
    captures_per_hold = Counter(captures.values_list("hold_id", flat=True))
    assert Counter(holds.values_list("status", flat=True)) == {
        Hold.Status.CAPTURED: MANY_JOBS
    }
    assert set(captures_per_hold) == set(holds.values_list("pk", flat=True))
    assert set(captures_per_hold.values()) == {1}
    assert not releases.exists()


# Queues


def test_queues_option_limits_claims(start_worker, catalog, owner_client):
    image = submit(owner_client, params={"size": "512x512"}).data["id"]
    video_params = {"size": "640x360", "duration": 2}
    video = submit(owner_client, model="local-video", params=video_params).data["id"]

    video_worker = start_worker("--burst", "--concurrency", "4", "--queues", "video")
    video_exit = video_worker.wait(timeout=30)
    image_left = Job.objects.get(pk=image)
    image_worker = start_worker("--burst", "--concurrency", "4", "--queues", "image")
    image_exit = image_worker.wait(timeout=30)

    assert video_exit == 0, video_worker.log()
    assert video_worker.claimed_job_ids() == [video]
    assert image_left.status == Job.Status.QUEUED
    assert image_left.attempts == 0
    assert image_exit == 0, image_worker.log()
    assert image_worker.claimed_job_ids() == [image]
    assert Job.objects.get(pk=video).status == Job.Status.COMPLETED
    assert Job.objects.get(pk=image).status == Job.Status.COMPLETED


@pytest.mark.parametrize("concurrency", ["1", "4"])
def test_burst_worker_waits_for_capped_job(
    start_worker, fast_model, heavy_user, concurrency
):
    # The user's one allowed job runs elsewhere, so the due job must wait for it.
    elsewhere, waiting = queue_jobs(heavy_user, fast_model, 2, timezone.now())
    Job.objects.filter(pk=elsewhere).update(
        status=Job.Status.RUNNING,
        attempts=1,
        locked_by="another-worker",
        locked_until=timezone.now() + timedelta(minutes=5),
    )
    worker = start_worker(
        "--burst", "--concurrency", concurrency, USER_MAX_IN_FLIGHT="1"
    )
    worker.wait_for_log("worker started")
    time.sleep(1.5)

    assert worker.process.poll() is None, worker.log()
    assert Job.objects.get(pk=waiting).status == Job.Status.QUEUED

    Job.objects.filter(pk=elsewhere).update(
        status=Job.Status.COMPLETED, locked_until=None
    )

    assert worker.wait(timeout=20) == 0, worker.log()
    assert Job.objects.get(pk=waiting).status == Job.Status.COMPLETED


def test_queues_option_rejects_unknown(start_worker):
    worker = start_worker("--queues", "bogus")

    exit_code = worker.wait(timeout=30)

    assert exit_code == 1
    assert "--queues takes image, video; got ['bogus']" in worker.log()
    assert "worker started" not in worker.log()


# Database cost


def connection_count(application_name: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
            [application_name],
        )
        return cursor.fetchone()[0]


def test_threaded_worker_connections_stay_few(start_worker, owner, settings):
    topup(owner, 1_000_000, "test credit")
    with ModelScopeFake("slow") as fake:
        add_modelscope_model(fake.url)
        for index in range(IN_FLIGHT_JOBS):
            submit_job(owner, MODELSCOPE_MODEL, f"tile {index}", {"size": "512x512"})
        worker = start_worker("--burst", "--concurrency", "30", **MODELSCOPE_ENV)
        running = Job.objects.filter(status=Job.Status.RUNNING)
        peak_connections = peak_running = 0
        while worker.process.poll() is None:
            connections = connection_count(worker.application_name)
            peak_connections = max(peak_connections, connections)
            peak_running = max(peak_running, running.count())
            time.sleep(0.1)
    print(f"connections: peak {peak_connections} with {peak_running} jobs running")

    assert worker.wait(timeout=1) == 0, worker.log()
    assert peak_running == IN_FLIGHT_JOBS
    # The LISTEN connection and at least one gate thread's.
    assert peak_connections >= 2
    assert peak_connections <= settings.WORKER_DB_THREADS + 1
    statuses = Counter(Job.objects.values_list("status", flat=True))
    assert statuses == {Job.Status.COMPLETED: IN_FLIGHT_JOBS}, worker.log()


def test_idle_worker_queries_rarely(start_worker):
    worker = start_worker("--concurrency", "4", manage=MANAGE_WITH_SQL_LOG)
    worker.wait_for_log("worker started")
    # Registering and the first claims are start-up work, not idle cost.
    time.sleep(1)

    before = worker.log().count(SQL_LINE)
    time.sleep(IDLE_SECONDS)
    statements = worker.log().count(SQL_LINE) - before
    per_second = statements / IDLE_SECONDS
    print(f"idle: {statements} statements in {IDLE_SECONDS} s ({per_second}/s)")

    # The heartbeat alone writes at least once per WORKER_HEARTBEAT_SECONDS.
    assert statements >= 1
    assert per_second < 0.5


def is_listening(application_name: str) -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT 1 FROM pg_stat_activity WHERE application_name = %s AND query = %s",
            [application_name, f"LISTEN {CHANNEL}"],
        )
        return cursor.fetchone() is not None


def test_notify_wakes_idle_worker(start_worker, catalog, owner_client):
    # Neither a poll nor a heartbeat wakes the worker during the test.
    worker = start_worker(
        "--concurrency",
        "4",
        WORKER_IDLE_POLL_SECONDS="30",
        WORKER_HEARTBEAT_SECONDS="30",
    )
    wait_for(
        lambda: is_listening(worker.application_name),
        timeout=20,
        description="the worker listening",
    )
    # Waits out the worker's first look at the empty queue, so that only the
    # notification can start the job.
    time.sleep(0.5)

    job_id = submit(owner_client, params={"size": "512x512"}).data["id"]
    job = Job.objects.filter(pk=job_id)
    wait_for(
        lambda: job.filter(started_at__isnull=False).exists(),
        timeout=10,
        description="the job starting",
    )
    started = job.get()
    latency = (started.started_at - started.created_at).total_seconds()
    print(f"wake-up: job started {latency:.3f} s after it was created")

    assert latency < 1
    worker.signal(signal.SIGTERM)
    assert worker.wait(timeout=10) == 0, worker.log()


def drop_connections(application_name: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE application_name = %s",
            [application_name],
        )
        return cursor.fetchone()[0]


def test_worker_survives_dropped_connections(start_worker, catalog, owner_client):
    worker = start_worker("--concurrency", "4", WORKER_IDLE_POLL_SECONDS="0.5")
    wait_for(
        lambda: is_listening(worker.application_name),
        timeout=20,
        description="the worker listening",
    )

    dropped = drop_connections(worker.application_name)
    job_id = submit(owner_client, params={"size": "512x512"}).data["id"]
    wait_for(
        lambda: Job.objects.filter(pk=job_id, status=Job.Status.COMPLETED).exists(),
        timeout=20,
        description="the job completing after the connections were dropped",
    )

    assert dropped >= 1
    assert worker.process.poll() is None, worker.log()
    worker.signal(signal.SIGTERM)
    assert worker.wait(timeout=10) == 0, worker.log()


def test_listener_wakes_worker_once_listening(catalog):
    # A job queued while the listener connects notifies no one, so the listener
    # wakes the worker once its LISTEN is in place.
    woken = threading.Event()
    seen_listening = []

    def on_notify(queue: str) -> None:
        seen_listening.append(is_listening(LISTENER_NAME))
        woken.set()

    listener = Listener(on_notify)
    listener.params = {**listener.params, "application_name": LISTENER_NAME}
    listener.start()
    try:
        assert woken.wait(timeout=10), "the listener never woke the worker"
    finally:
        listener.stop()

    assert seen_listening[0] is True
