"""Claims, leases, retries, cancels and stops of queued jobs."""

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from assets.models import Asset
from billing.models import Hold, LedgerEntry, Wallet
from billing.services import topup
from generation import claims, monitor, queue
from generation.models import Job
from generation.queue import Lease, LeaseLost
from generation.services import cancel_job, submit_job
from generation.worker import Worker
from providers import registry
from providers.adapters.local import LocalAdapter
from providers.errors import ProviderError
from providers.models import ModelSpec

pytestmark = pytest.mark.django_db

JOB_PRICE = 300
STARTING_BALANCE = 1000


class ScriptedAdapter:
    """An adapter that runs the script the current test installs."""

    kind = "local"
    script = None

    def generate(self, request, context):
        return type(self).script(request, context)


@pytest.fixture
def use_adapter(monkeypatch):
    """Route jobs of the local provider to `script(request, context)`."""

    def install(script) -> None:
        monkeypatch.setattr(ScriptedAdapter, "script", staticmethod(script))
        adapter_path = f"{__name__}.ScriptedAdapter"
        monkeypatch.setitem(registry.ADAPTERS, "local", adapter_path)

    return install


@pytest.fixture
def job(catalog, owner) -> Job:
    ModelSpec.objects.filter(name="local-image").update(price=JOB_PRICE)
    topup(owner, STARTING_BALANCE, "test credit")
    job, _ = submit_job(owner, "local-image", "a lighthouse", {"size": "512x512"})
    return job


@pytest.fixture
def worker() -> Worker:
    return Worker(burst=True)


def run_next(worker: Worker) -> Job:
    """Claim the next due job with `worker`, run it, and return it reloaded."""
    claimed = claims.claim_next(worker.worker_id)
    assert claimed is not None, "no job was due"
    worker.run_one(claimed)
    return Job.objects.get(pk=claimed.pk)


def expire_lease(job: Job) -> None:
    past = timezone.now() - timedelta(seconds=1)
    Job.objects.filter(pk=job.pk).update(locked_until=past)


def make_due(job: Job) -> None:
    Job.objects.filter(pk=job.pk).update(run_after=timezone.now())


def lease_of(job: Job) -> Lease:
    return Lease(job.pk, job.attempts, job.locked_by)


def balance_of(job: Job) -> int:
    return Wallet.objects.get(user=job.owner).balance


def settlements_of(job: Job) -> list[str]:
    entries = LedgerEntry.objects.filter(hold__job=job).exclude(kind="hold")
    return list(entries.values_list("kind", flat=True))


def hold_status(job: Job) -> str:
    return Hold.objects.get(job=job).status


def rendered_image(request, context) -> list:
    return LocalAdapter().generate(request, context)


def test_claim_next_empty_queue_returns_none():
    assert claims.claim_next("worker-a") is None


def test_claim_next_takes_due_job(job):
    claimed = claims.claim_next("worker-a")

    assert claimed.pk == job.pk
    assert claimed.status == Job.Status.RUNNING
    assert claimed.attempts == 1
    assert claimed.locked_by == "worker-a"
    assert claimed.locked_until > timezone.now()


def test_claim_next_skips_future_run_after(job):
    later = timezone.now() + timedelta(hours=1)
    Job.objects.filter(pk=job.pk).update(run_after=later)

    assert claims.claim_next("worker-a") is None
    assert Job.objects.get(pk=job.pk).status == Job.Status.QUEUED


def test_claim_next_skips_live_lease(job):
    claims.claim_next("worker-a")

    assert claims.claim_next("worker-b") is None


def test_claim_next_reclaims_expired_lease(job):
    claims.claim_next("worker-a")
    expire_lease(job)

    claimed = claims.claim_next("worker-b")

    assert claimed.pk == job.pk
    assert claimed.status == Job.Status.RUNNING
    assert claimed.attempts == 2
    assert claimed.locked_by == "worker-b"


@pytest.fixture
def stolen_lease(job) -> Lease:
    """Return worker A's lease on `job` after worker B took over the expired lease."""
    first = claims.claim_next("worker-a")
    expire_lease(job)
    claims.claim_next("worker-b")
    return lease_of(first)


def test_stolen_lease_progress_raises(stolen_lease, job):
    with pytest.raises(LeaseLost):
        queue.report_progress(stolen_lease, 50)

    assert Job.objects.get(pk=job.pk).progress == 0


def test_stolen_lease_complete_stores_nothing(stolen_lease, job):
    stored = []

    completed = queue.complete(stolen_lease, lambda: stored.append("asset"))

    assert completed is False
    assert stored == []
    assert not Asset.objects.filter(source_job=job).exists()
    assert Job.objects.get(pk=job.pk).status == Job.Status.RUNNING
    assert hold_status(job) == Hold.Status.HELD
    assert settlements_of(job) == []


def test_stolen_lease_fail_changes_nothing(stolen_lease, job):
    failed = queue.fail(stolen_lease, "provider_error", "Lost the race.")

    reloaded = Job.objects.get(pk=job.pk)
    assert failed is False
    assert reloaded.status == Job.Status.RUNNING
    assert reloaded.locked_by == "worker-b"
    assert reloaded.error_code == ""
    assert hold_status(job) == Hold.Status.HELD
    assert settlements_of(job) == []
    assert balance_of(job) == STARTING_BALANCE - JOB_PRICE


def test_stolen_lease_winner_completes(stolen_lease, job):
    winner = lease_of(Job.objects.get(pk=job.pk))

    completed = queue.complete(winner, lambda: None)

    assert completed is True
    assert Job.objects.get(pk=job.pk).status == Job.Status.COMPLETED
    assert hold_status(job) == Hold.Status.CAPTURED
    assert settlements_of(job) == [LedgerEntry.Kind.CAPTURE]


def test_reclaim_after_last_attempt_fails_job(job, worker, use_adapter):
    calls = []

    def record_call(request, context):
        calls.append(request)
        return rendered_image(request, context)

    use_adapter(record_call)
    past = timezone.now() - timedelta(seconds=1)
    Job.objects.filter(pk=job.pk).update(
        status=Job.Status.RUNNING,
        attempts=job.max_attempts,
        locked_by="dead-worker",
        locked_until=past,
    )

    reloaded = run_next(worker)

    assert calls == []
    assert reloaded.status == Job.Status.FAILED
    assert reloaded.error_code == "worker_lost"
    assert reloaded.error_message
    assert hold_status(job) == Hold.Status.RELEASED
    assert settlements_of(job) == [LedgerEntry.Kind.RELEASE]
    assert balance_of(job) == STARTING_BALANCE


def test_unchanged_progress_extends_lease(job, worker, use_adapter, settings):
    settings.WORKER_LEASE_SECONDS = 1
    due_while_running = []

    def report_same_percent(request, context):
        for _ in range(5):
            context.progress(10)
            time.sleep(0.4)
            due = Job.objects.due().filter(pk=request.job_id).exists()
            due_while_running.append(due)
        return rendered_image(request, context)

    use_adapter(report_same_percent)

    reloaded = run_next(worker)

    assert due_while_running == [False] * 5
    assert reloaded.status == Job.Status.COMPLETED
    assert reloaded.attempts == 1


def raise_rate_limited(request, context):
    raise ProviderError(
        "provider_rate_limited", "The vendor is busy.", retryable=True, retry_after=30
    )


def test_retryable_error_requeues_job(job, worker, use_adapter):
    use_adapter(raise_rate_limited)
    before = timezone.now()

    reloaded = run_next(worker)

    assert reloaded.status == Job.Status.QUEUED
    assert reloaded.attempts == 1
    assert reloaded.error_code == "provider_rate_limited"
    assert reloaded.run_after >= before + timedelta(seconds=30)
    assert reloaded.locked_by == ""
    assert hold_status(job) == Hold.Status.HELD
    assert claims.claim_next(worker.worker_id) is None


def test_retryable_error_fails_after_max_attempts(job, worker, use_adapter):
    use_adapter(raise_rate_limited)

    for _ in range(job.max_attempts):
        make_due(job)
        reloaded = run_next(worker)

    assert reloaded.status == Job.Status.FAILED
    assert reloaded.attempts == job.max_attempts
    assert reloaded.error_code == "provider_rate_limited"
    assert reloaded.error_message == "The vendor is busy."
    assert hold_status(job) == Hold.Status.RELEASED
    assert settlements_of(job) == [LedgerEntry.Kind.RELEASE]
    assert balance_of(job) == STARTING_BALANCE


def test_final_error_fails_at_once(job, worker, use_adapter):
    def reject(request, context):
        raise ProviderError("provider_rejected", "The vendor rejected the prompt.")

    use_adapter(reject)

    reloaded = run_next(worker)

    assert reloaded.status == Job.Status.FAILED
    assert reloaded.attempts == 1
    assert reloaded.error_code == "provider_rejected"
    assert reloaded.error_message == "The vendor rejected the prompt."
    assert settlements_of(job) == [LedgerEntry.Kind.RELEASE]
    assert balance_of(job) == STARTING_BALANCE


def test_adapter_crash_fails_job(job, worker, use_adapter):
    def crash(request, context):
        raise RuntimeError("bug in the adapter")

    use_adapter(crash)

    reloaded = run_next(worker)

    assert reloaded.status == Job.Status.FAILED
    assert reloaded.error_code == "provider_error"
    assert settlements_of(job) == [LedgerEntry.Kind.RELEASE]


def cancel_then_report(request, context):
    cancel_job(Job.objects.get(pk=request.job_id))
    context.progress(50)
    return rendered_image(request, context)


def cancel_then_return(request, context):
    files = rendered_image(request, context)
    cancel_job(Job.objects.get(pk=request.job_id))
    return files


@pytest.mark.parametrize("script", [cancel_then_report, cancel_then_return])
def test_cancel_running_job_stops_it(job, worker, use_adapter, script):
    use_adapter(script)

    reloaded = run_next(worker)

    assert reloaded.status == Job.Status.CANCELED
    assert reloaded.error_code == ""
    assert not Asset.objects.filter(source_job=job).exists()
    assert hold_status(job) == Hold.Status.RELEASED
    assert settlements_of(job) == [LedgerEntry.Kind.RELEASE]
    assert balance_of(job) == STARTING_BALANCE


def test_second_stop_request_hands_job_back(job, worker, use_adapter):
    def stop_twice(request, context):
        worker.request_stop()
        worker.request_stop()
        context.progress(50)
        return rendered_image(request, context)

    use_adapter(stop_twice)

    reloaded = run_next(worker)

    assert reloaded.status == Job.Status.QUEUED
    assert reloaded.attempts == 0
    assert reloaded.locked_by == ""
    assert reloaded.locked_until is None
    assert not Asset.objects.filter(source_job=job).exists()
    assert hold_status(job) == Hold.Status.HELD
    assert claims.claim_next("worker-b").attempts == 1


# Worker.run closes stale connections, which would end a test's transaction.
@pytest.mark.django_db(transaction=True)
def test_first_stop_request_finishes_job(job, catalog, owner, use_adapter):
    waiting, _ = submit_job(owner, "local-image", "a harbor", {"size": "512x512"})
    worker = Worker(poll_seconds=0.01)

    def stop_once(request, context):
        worker.request_stop()
        return rendered_image(request, context)

    use_adapter(stop_once)

    worker.run()

    assert Job.objects.get(pk=job.pk).status == Job.Status.COMPLETED
    assert Asset.objects.filter(source_job=job).count() == 1
    assert hold_status(job) == Hold.Status.CAPTURED
    assert Job.objects.get(pk=waiting.pk).status == Job.Status.QUEUED


@pytest.fixture
def retry_timing(settings):
    settings.RETRY_BASE_SECONDS = 2.0
    settings.RETRY_MAX_SECONDS = 60.0


SAMPLES = 50


@pytest.mark.parametrize("attempt", [1, 2, 3, 4, 5])
def test_backoff_doubles_with_attempt(retry_timing, attempt):
    ceiling = 2.0 * 2 ** (attempt - 1)

    delays = [queue.backoff_seconds(attempt) for _ in range(SAMPLES)]

    assert min(delays) >= ceiling / 2
    assert max(delays) <= ceiling


def test_backoff_capped_by_retry_max(retry_timing):
    delays = [queue.backoff_seconds(30) for _ in range(SAMPLES)]

    assert max(delays) <= 60.0
    assert min(delays) >= 30.0


def test_backoff_honours_retry_after(retry_timing):
    delays = [queue.backoff_seconds(1, retry_after=45) for _ in range(SAMPLES)]

    assert min(delays) >= 45


def test_backoff_caps_retry_after(retry_timing):
    delays = [queue.backoff_seconds(1, retry_after=3600) for _ in range(SAMPLES)]

    assert set(delays) == {60.0}


def watched_context(worker: Worker):
    """Claim the next due job and return a context monitored by the control loop."""
    claimed = claims.claim_next(worker.worker_id)
    assert claimed is not None, "no job was due"
    return worker.runner.context_for(claimed, monitored=True)


def test_watch_marks_canceled_job_lost(job, worker, caplog):
    context = watched_context(worker)
    cancel_job(Job.objects.get(pk=job.pk))

    with caplog.at_level("INFO", logger="generation.monitor"):
        monitor.Watch(worker)._mark_lost([context])

    assert context.lost.is_set()
    assert f"job canceled or taken over job={job.pk}" in caplog.text


def test_watch_leaves_ending_job_alone(job, worker, caplog):
    context = watched_context(worker)
    # The runner marks the context before it writes the outcome.
    context.ending.set()
    assert queue.complete(context.lease, lambda: None)

    with caplog.at_level("INFO", logger="generation.monitor"):
        monitor.Watch(worker)._mark_lost([context])

    assert not context.lost.is_set()
    assert "taken over" not in caplog.text


def test_runner_marks_context_ending(job, worker, use_adapter):
    use_adapter(rendered_image)
    claimed = claims.claim_next(worker.worker_id)
    context = worker.runner.context_for(claimed, monitored=True)

    worker.runner.run(claimed, context)

    assert context.ending.is_set()
    assert Job.objects.get(pk=job.pk).status == Job.Status.COMPLETED


def test_give_up_marks_context_ending(job, worker):
    Job.objects.filter(pk=job.pk).update(max_attempts=0)
    claimed = claims.claim_next(worker.worker_id)
    context = worker.runner.context_for(claimed, monitored=True)

    worker.runner.run(claimed, context)

    assert context.ending.is_set()
    assert Job.objects.get(pk=job.pk).error_code == "worker_lost"


def test_burst_continues_after_busy_pass():
    worker = Worker(burst=True, concurrency=2, queues=("image",), listen=False)
    try:
        worker.in_flight.update({1: ("image", None), 2: ("image", None)})
        claimed = worker._fill_slots()
        # Both jobs finish after the pass found no free slot.
        worker.in_flight.clear()

        assert claimed == 0
        assert not worker._finished(monitor.Watch(worker))
    finally:
        worker.gate.close()


@pytest.fixture
def claimed_pair(catalog, owner) -> list[Lease]:
    """Return the leases of two jobs that one worker has claimed."""
    ModelSpec.objects.filter(name="local-image").update(price=JOB_PRICE)
    topup(owner, STARTING_BALANCE, "test credit")
    for prompt in ("a lighthouse", "a harbour"):
        submit_job(owner, "local-image", prompt, {"size": "512x512"})
    jobs = claims.claim_batch("worker-a", "image", 2)
    assert len(jobs) == 2
    return [lease_of(job) for job in jobs]


def recording_completions(leases: list[Lease], stored: list) -> list:
    """Return completions whose assets step appends the job id to `stored`."""
    return [
        queue.Completion(lease, lambda lease=lease: stored.append(lease.job_id))
        for lease in leases
    ]


def test_complete_many_completes_all(claimed_pair):
    stored = []
    completions = recording_completions(claimed_pair, stored)

    outcomes = queue.complete_many(completions)

    assert outcomes == [True, True]
    assert sorted(map(str, stored)) == sorted(
        str(lease.job_id) for lease in claimed_pair
    )
    for lease in claimed_pair:
        job = Job.objects.get(pk=lease.job_id)
        assert job.status == Job.Status.COMPLETED
        assert hold_status(job) == Hold.Status.CAPTURED
        assert settlements_of(job) == [LedgerEntry.Kind.CAPTURE]


def test_complete_many_skips_lost_lease(claimed_pair):
    lost, kept = claimed_pair
    cancel_job(Job.objects.get(pk=lost.job_id))
    stored = []
    completions = recording_completions(claimed_pair, stored)

    outcomes = queue.complete_many(completions)

    assert outcomes == [False, True]
    assert stored == [kept.job_id]
    assert Job.objects.get(pk=lost.job_id).status == Job.Status.CANCELED
    assert hold_status(Job(pk=lost.job_id)) == Hold.Status.RELEASED
    assert hold_status(Job(pk=kept.job_id)) == Hold.Status.CAPTURED


def test_complete_many_isolates_failing_job(claimed_pair):
    broken, healthy = claimed_pair

    def fail_to_store() -> None:
        raise OSError("disk full")

    outcomes = queue.complete_many(
        [queue.Completion(broken, fail_to_store), queue.Completion(healthy, list)]
    )

    assert isinstance(outcomes[0], OSError)
    assert outcomes[1] is True
    assert Job.objects.get(pk=broken.job_id).status == Job.Status.RUNNING
    assert hold_status(Job(pk=broken.job_id)) == Hold.Status.HELD
    assert settlements_of(Job(pk=broken.job_id)) == []
    assert Job.objects.get(pk=healthy.job_id).status == Job.Status.COMPLETED
    assert hold_status(Job(pk=healthy.job_id)) == Hold.Status.CAPTURED


def test_claim_fields_match_database(catalog, owner):
    submit_job(owner, "local-image", "a lighthouse", {"size": "512x512"})

    (claimed,) = claims.claim_batch("worker-a", "image", 1)

    stored = Job.objects.get(pk=claimed.pk)
    for name in ("status", "attempts", "locked_by", "locked_until", "started_at"):
        assert getattr(claimed, name) == getattr(stored, name), name
    assert claimed.model.name == "local-image"
    assert claimed.owner == owner
