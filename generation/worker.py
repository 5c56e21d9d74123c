"""The worker loop: claim a due job, run it through its adapter, record the result."""

import logging
import os
import signal
import socket
import threading
import uuid

from django.db import close_old_connections

from assets.media import InvalidMedia
from assets.services import create_asset, load_reference, prepare_file
from generation import queue
from generation.context import WorkerJobContext, WorkerStopping
from generation.models import Job
from generation.queue import Lease, LeaseLost
from providers.adapters.base import GenerationRequest, ResultFile
from providers.errors import ProviderError
from providers.registry import get_adapter

logger = logging.getLogger(__name__)


class Worker:
    def __init__(self, poll_seconds: float = 1.0, burst: bool = False) -> None:
        self.poll_seconds = poll_seconds
        self.burst = burst
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.stopping = threading.Event()
        self.stop_now = threading.Event()

    def run(self) -> None:
        logger.info("worker started worker=%s burst=%s", self.worker_id, self.burst)
        while not self.stopping.is_set():
            close_old_connections()
            job = queue.claim_next(self.worker_id)
            if job is not None:
                self.run_one(job)
                continue
            if self.burst:
                break
            self.stopping.wait(self.poll_seconds)
        close_old_connections()
        logger.info("worker stopped worker=%s", self.worker_id)

    def request_stop(self, signum: int = signal.SIGTERM, frame=None) -> None:
        """Finish the running job, then stop; a second request stops at once."""
        if self.stopping.is_set():
            self.stop_now.set()
        self.stopping.set()

    def run_one(self, job: Job) -> None:
        lease = Lease(job.pk, job.attempts, self.worker_id)
        log_ids = f"job={job.pk} provider={job.provider.name} attempt={job.attempts}"
        logger.info("job claimed %s worker=%s", log_ids, self.worker_id)
        if job.attempts > job.max_attempts:
            self._give_up(lease, log_ids)
            return

        try:
            self._generate_and_store(job, lease)
        except LeaseLost:
            logger.info("job lost its lease %s; dropped its result", log_ids)
        except WorkerStopping:
            queue.hand_back(lease)
            logger.info("job handed back %s worker=%s", log_ids, self.worker_id)
        except ProviderError as error:
            self._record_failure(job, lease, error, log_ids)
        except Exception:
            logger.exception("job crashed %s", log_ids)
            queue.fail(lease, "provider_error", "The generation failed unexpectedly.")

    def _generate_and_store(self, job: Job, lease: Lease) -> None:
        adapter = get_adapter(job.provider.kind)
        context = WorkerJobContext(lease, self.stop_now)
        files = adapter.generate(self._request_for(job), context)
        if not files:
            raise ProviderError("result_invalid", "The provider returned no result.")

        prepared = [self._prepare(file) for file in files]
        if not queue.complete(lease, lambda: self._store(job, prepared)):
            raise LeaseLost(str(job.pk))
        logger.info("job completed job=%s files=%d", job.pk, len(prepared))

    def _prepare(self, file: ResultFile):
        try:
            return file.content, *prepare_file(file.content, file.mime_type)
        except InvalidMedia as error:
            raise ProviderError("result_invalid", str(error)) from error

    def _store(self, job: Job, prepared: list) -> None:
        for content, info, preview in prepared:
            create_asset(
                job.owner,
                content,
                info,
                preview,
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
            reference=load_reference(job),
        )

    def _record_failure(
        self, job: Job, lease: Lease, error: ProviderError, log_ids: str
    ) -> None:
        if error.retryable and lease.attempt < job.max_attempts:
            try:
                delay = queue.retry_later(
                    lease, error.code, error.message, error.retry_after
                )
            except LeaseLost:
                logger.info("job lost its lease %s; not retried", log_ids)
                return
            logger.warning(
                "job retry %s code=%s delay=%.1fs", log_ids, error.code, delay
            )
            return
        if queue.fail(lease, error.code, error.message):
            logger.info("job failed %s code=%s", log_ids, error.code)
        else:
            logger.info("job lost its lease %s; failure not recorded", log_ids)

    def _give_up(self, lease: Lease, log_ids: str) -> None:
        message = "The worker running this job stopped too many times."
        queue.fail(lease, "worker_lost", message)
        logger.warning("job failed %s code=worker_lost", log_ids)
