"""The worker: claims due jobs and keeps up to `concurrency` per queue in flight.

One control thread claims, watches leases and cancels, and heartbeats. Each job
runs on one of the JobThreads, mostly waiting on a vendor. Every database call
goes through a DatabaseGate, so the process uses a few connections however
many jobs are in flight. With concurrency 1 the job runs in the control thread.
"""

import logging
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from queue import SimpleQueue
from typing import Any

from django.conf import settings
from django.db import DatabaseError, close_old_connections

from generation import monitor
from generation.claims import claim_batch, claim_next
from generation.context import WorkerJobContext
from generation.dbgate import STALE_CHECK_SECONDS, DatabaseGate
from generation.models import Job
from generation.runner import JobRunner
from generation.wakeup import Listener, can_listen

logger = logging.getLogger(__name__)

QUEUES = ("image", "video")
# After the grace period, how long stopping jobs get to hand themselves back.
HAND_BACK_SECONDS = 3.0
DATABASE_RETRY_SECONDS = 2.0


class JobThreads:
    """Daemon threads that run jobs, started when none is idle and then reused.

    Reuse keeps a thread start per claimed job off the control thread, which
    also claims. The threads are daemons, so a forced stop does not wait for a
    job stuck on a vendor.
    """

    def __init__(self) -> None:
        self._tasks: SimpleQueue = SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0
        self._started = 0

    def submit(self, function: Callable[..., None], *args: Any) -> None:
        with self._lock:
            if self._idle:
                self._idle -= 1
            else:
                self._started += 1
                name = f"job-{self._started}"
                threading.Thread(target=self._serve, name=name, daemon=True).start()
        self._tasks.put((function, args))

    def _serve(self) -> None:
        while True:
            function, args = self._tasks.get()
            try:
                function(*args)
            finally:
                # Counted idle before it waits again, so the next submit() hands
                # its task to this thread instead of starting another one.
                with self._lock:
                    self._idle += 1


class Worker:
    def __init__(
        self,
        poll_seconds: float | None = None,
        burst: bool = False,
        concurrency: int = 1,
        queues: Iterable[str] = QUEUES,
        grace_seconds: float | None = None,
        listen: bool = True,
    ) -> None:
        self.poll_seconds = poll_seconds or settings.WORKER_POLL_SECONDS
        self.burst = burst
        self.concurrency = concurrency
        self.queues = tuple(queues)
        self.grace_seconds = (
            settings.WORKER_GRACE_SECONDS if grace_seconds is None else grace_seconds
        )
        self.listen = listen
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.stopping = threading.Event()
        self.stop_now = threading.Event()
        self.forced = False
        self.wake = threading.Event()
        self.threaded = concurrency > 1
        self.gate = DatabaseGate(settings.WORKER_DB_THREADS if self.threaded else 0)
        self.runner = JobRunner(self.worker_id, self.gate, self.stop_now)
        self.in_flight: dict = {}
        self.lock = threading.Lock()
        self.job_threads = JobThreads()
        # Set when a claim pass with no job in flight found nothing to claim.
        self.drained = False

    def request_stop(self, signum: int = signal.SIGTERM, frame=None) -> None:
        """Stop claiming and let running jobs finish; a second request stops at once."""
        if self.stopping.is_set():
            self.forced = True
            self.stop_now.set()
        self.stopping.set()
        self.wake.set()

    def run(self) -> None:
        logger.info(
            "worker started worker=%s queues=%s concurrency=%d burst=%s",
            self.worker_id,
            ",".join(self.queues),
            self.concurrency,
            self.burst,
        )
        if self.threaded:
            self._run_threaded()
        else:
            self._run_inline()
        logger.info("worker stopped worker=%s", self.worker_id)

    def run_one(self, job: Job) -> None:
        """Run one claimed job in this thread."""
        self.runner.run(job, self.runner.context_for(job, monitored=False))

    def _run_inline(self) -> None:
        checked_at = 0.0
        while not self.stopping.is_set():
            # Dropping stale connections costs a health-check query, so it runs
            # after idle waits and now and then, not once per job.
            if time.monotonic() - checked_at > STALE_CHECK_SECONDS:
                close_old_connections()
                checked_at = time.monotonic()
            job = claim_next(self.worker_id, self.queues)
            if job is not None:
                self.run_one(job)
                continue
            checked_at = 0.0
            if self.burst and not self._due_exists():
                break
            self.stopping.wait(self._wait_seconds(listening=False))
        close_old_connections()

    def _run_threaded(self) -> None:
        listener = self._start_listener()
        self.gate.run(monitor.register, self)
        try:
            self._control_loop(listener is not None)
        finally:
            self._shut_down()
            if listener is not None:
                listener.stop()
            self.gate.close()

    def _start_listener(self) -> Listener | None:
        if not (self.listen and can_listen()):
            return None
        listener = Listener(lambda queue: self.wake.set())
        listener.start()
        return listener

    def _control_loop(self, listening: bool) -> None:
        watch = monitor.Watch(self)
        while not self.stop_now.is_set():
            # Cleared before looking, so a wake-up that comes while this pass
            # runs makes the next wait return at once instead of being lost.
            self.wake.clear()
            try:
                claimed = 0 if self.stopping.is_set() else self._fill_slots()
                watch.tick()
            except DatabaseError:
                # A database restart must not kill the worker: its jobs go on,
                # and the next tick tries again.
                logger.exception("worker tick failed worker=%s", self.worker_id)
                self.stop_now.wait(DATABASE_RETRY_SECONDS)
                continue
            if self._finished(watch):
                return
            if claimed and self._has_free_slot():
                continue
            self.wake.wait(self._wait_seconds(listening))

    def _finished(self, watch: "monitor.Watch") -> bool:
        if self.stopping.is_set():
            if not self.in_flight:
                return True
            if watch.grace_over(self.grace_seconds):
                self.stop_now.set()
            return False
        # Due jobs held back by a cap run once other workers' jobs finish, so a
        # burst worker waits for them rather than leaving them behind.
        return self.burst and self.drained and not self._any_due()

    def _wait_seconds(self, listening: bool) -> float:
        if self.in_flight:
            return settings.WORKER_CANCEL_CHECK_SECONDS
        if self.burst:
            return min(self.poll_seconds, 0.2)
        idle_seconds = (
            settings.WORKER_IDLE_POLL_SECONDS if listening else self.poll_seconds
        )
        # This loop writes the heartbeat, so an idle worker wakes at least once
        # per heartbeat interval. A longer idle poll would make it look dead.
        return min(idle_seconds, settings.WORKER_HEARTBEAT_SECONDS)

    def _has_free_slot(self) -> bool:
        return any(self._free_slots(queue) for queue in self.queues)

    def _free_slots(self, queue: str) -> int:
        with self.lock:
            busy = sum(1 for entry in self.in_flight.values() if entry[0] == queue)
        return self.concurrency - busy

    def _fill_slots(self) -> int:
        # A burst run ends when a pass that started with no job in flight
        # claims nothing. An empty in_flight after the pass proves nothing:
        # the jobs may have finished after it found every slot busy.
        idle = not self.in_flight
        self.drained = False
        # An idle worker first checks with one query whether any of its queues
        # has a due job, instead of running the claim query of every queue.
        if idle and not self._any_due():
            self.drained = True
            return 0

        claimed = 0
        for queue in self.queues:
            free = self._free_slots(queue)
            if free <= 0:
                continue
            claimed_jobs = self.gate.run_first(
                claim_batch, self.worker_id, queue, free, self._running_ids()
            )
            for job in claimed_jobs:
                self._start(queue, job)
                claimed += 1
        self.drained = idle and not claimed
        return claimed

    def _running_ids(self) -> list:
        with self.lock:
            return list(self.in_flight)

    def _any_due(self) -> bool:
        return self.gate.run_first(self._due_exists)

    def _due_exists(self) -> bool:
        return Job.objects.due().filter(queue__in=self.queues).exists()

    def _start(self, queue: str, job: Job) -> None:
        context = self.runner.context_for(job, monitored=True)
        with self.lock:
            self.in_flight[job.pk] = (queue, context)
        self.job_threads.submit(self._run_job, job, context)

    def _run_job(self, job: Job, context: WorkerJobContext) -> None:
        try:
            self.runner.run(job, context)
        finally:
            with self.lock:
                self.in_flight.pop(job.pk, None)
            self.wake.set()

    def contexts(self) -> list[WorkerJobContext]:
        with self.lock:
            return [context for _, context in self.in_flight.values()]

    def _shut_down(self) -> None:
        # Jobs asked to stop hand themselves back at their next check. A forced
        # stop does not wait for them.
        deadline = time.monotonic() + (0 if self.forced else HAND_BACK_SECONDS)
        while self.in_flight and time.monotonic() < deadline:
            time.sleep(0.05)
        leases = [context.lease for context in self.contexts()]
        if leases:
            self.gate.run(monitor.hand_back_all, leases)
        for lease in leases:
            logger.info(
                "job handed back job=%s worker=%s", lease.job_id, self.worker_id
            )
        self.gate.run(monitor.unregister, self)
