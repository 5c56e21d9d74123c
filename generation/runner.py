"""Run one claimed job: adapter, ingest, and the checked writes that end it."""

import logging
import threading

from django.conf import settings
from django.db import connection
from django.utils import translation
from django.utils.translation import gettext

from accounts.language import preferred_language
from assets.media import InvalidMedia
from assets.services import PreparedMedia, load_reference, prepare_media, record_asset
from generation import queue
from generation.context import WorkerJobContext, WorkerStopping
from generation.dbgate import DatabaseGate
from generation.models import Job
from generation.queue import Lease, LeaseLost
from providers.adapters.base import GenerationRequest, ResultFile
from providers.errors import ProviderError
from providers.registry import get_adapter

logger = logging.getLogger(__name__)


class LeaseKeeper:
    """Extend an unmonitored job's lease from a thread while its adapter blocks.

    A worker with --concurrency 1 runs the job in its control thread, so no
    monitor renews the lease while a vendor reply or a result download blocks.
    Past WORKER_LEASE_SECONDS another worker would claim the job and submit it to
    the vendor again.
    """

    def __init__(self, lease: Lease, active: bool = True) -> None:
        self.lease = lease
        self.active = active
        self.stopped = threading.Event()
        self.thread = threading.Thread(
            target=self._run, name=f"lease-{lease.job_id}", daemon=True
        )

    def __enter__(self) -> "LeaseKeeper":
        if self.active:
            self.thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stopped.set()
        if self.active:
            self.thread.join()

    def _run(self) -> None:
        interval = settings.WORKER_LEASE_SECONDS / 3
        try:
            while not self.stopped.wait(interval):
                if not queue.extend_lease(self.lease):
                    return
        except Exception:
            logger.exception("lease renewal failed job=%s", self.lease.job_id)
        finally:
            connection.close()


class JobRunner:
    """Runs claimed jobs of one worker; every database call goes through `gate`."""

    def __init__(
        self, worker_id: str, gate: DatabaseGate, stop_now: threading.Event
    ) -> None:
        self.worker_id = worker_id
        self.gate = gate
        self.stop_now = stop_now

    def context_for(self, job: Job, monitored: bool) -> WorkerJobContext:
        lease = Lease(job.pk, job.attempts, self.worker_id)
        return WorkerJobContext(lease, self.gate, self.stop_now, monitored)

    def run(self, job: Job, context: WorkerJobContext) -> None:
        # Messages stored on the job are in its owner's language, and the
        # thread's previous language comes back when the job ends.
        with translation.override(preferred_language(job.owner)):
            self._run(job, context)

    def _run(self, job: Job, context: WorkerJobContext) -> None:
        lease = context.lease
        log_ids = f"job={job.pk} provider={job.provider.name} attempt={job.attempts}"
        logger.info("job claimed %s worker=%s", log_ids, self.worker_id)
        if job.attempts > job.max_attempts:
            context.ending.set()
            self._give_up(lease, log_ids)
            return

        try:
            self._generate_and_store(job, context)
        except LeaseLost:
            logger.info("job lost its lease %s; dropped its result", log_ids)
        except WorkerStopping:
            context.ending.set()
            self.gate.run(queue.hand_back, lease)
            logger.info("job handed back %s worker=%s", log_ids, self.worker_id)
        except ProviderError as error:
            context.ending.set()
            self._record_failure(job, lease, error, log_ids)
        except Exception:
            context.ending.set()
            logger.exception("job crashed %s", log_ids)
            message = gettext("The generation failed unexpectedly.")
            self.gate.run(queue.fail, lease, "provider_error", message)

    def _generate_and_store(self, job: Job, context: WorkerJobContext) -> None:
        adapter = get_adapter(job.provider.kind)
        request = self._request_for(job)
        with LeaseKeeper(context.lease, active=not context.monitored):
            files = adapter.generate(request, context)
            if not files and not getattr(adapter, "empty_result_ok", False):
                raise ProviderError(
                    "result_invalid", gettext("The provider returned no result.")
                )
            prepared = [self._prepare(file) for file in files]
        context.ending.set()
        completion = queue.Completion(
            context.lease, lambda: self._record(job, prepared)
        )
        stored = self.gate.run_batched(queue.complete_many, completion)
        if not stored:
            raise LeaseLost(str(job.pk))
        logger.info("job completed job=%s files=%d", job.pk, len(prepared))

    def _prepare(self, file: ResultFile) -> PreparedMedia:
        try:
            return prepare_media(file.content, file.mime_type)
        except InvalidMedia as error:
            raise ProviderError("result_invalid", str(error)) from error

    def _record(self, job: Job, prepared: list[PreparedMedia]) -> None:
        for media in prepared:
            record_asset(
                job.owner,
                media,
                source_job=job,
                model_name=job.model.name,
                prompt=job.prompt,
                params=job.params,
            )

    def _request_for(self, job: Job) -> GenerationRequest:
        return GenerationRequest(
            job_id=str(job.pk),
            kind=job.model.kind,
            remote_model=job.remote_model,
            prompt=job.prompt,
            params=job.params,
            base_url=job.provider.base_url,
            api_key=job.provider.resolve_api_key(),
            provider_name=job.provider.name,
            limits=job.model.limits(),
            remote_task_id=job.remote_task_id,
            progress=job.progress,
            reference=self._reference_for(job),
        )

    def _reference_for(self, job: Job):
        if not job.params.get("reference_asset"):
            return None
        return self.gate.run(load_reference, job)

    def _record_failure(
        self, job: Job, lease: Lease, error: ProviderError, log_ids: str
    ) -> None:
        if error.retryable and lease.attempt < job.max_attempts:
            self._retry(lease, error, log_ids)
            return
        if self.gate.run(queue.fail, lease, error.code, error.message):
            logger.info("job failed %s code=%s", log_ids, error.code)
        else:
            logger.info("job lost its lease %s; failure not recorded", log_ids)

    def _retry(self, lease: Lease, error: ProviderError, log_ids: str) -> None:
        try:
            delay = self.gate.run(
                queue.retry_later, lease, error.code, error.message, error.retry_after
            )
        except LeaseLost:
            logger.info("job lost its lease %s; not retried", log_ids)
            return
        logger.warning("job retry %s code=%s delay=%.1fs", log_ids, error.code, delay)

    def _give_up(self, lease: Lease, log_ids: str) -> None:
        message = gettext("The worker running this job stopped too many times.")
        self.gate.run(queue.fail, lease, "worker_lost", message)
        logger.warning("job failed %s code=worker_lost", log_ids)
