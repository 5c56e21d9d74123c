"""Start real `runworker` processes on the test database, and read their logs.

Also adds models on fake vendors, which the workers reach on loopback.
"""

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote

import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone

from generation.models import Job
from generation.wakeup import notify_job_queued
from providers.models import ModelSpec, Provider

PROJECT_DIR = Path(__file__).resolve().parents[2]
CLAIM_LINE = re.compile(r"job claimed job=([0-9a-f-]{36})")
MANAGE = ("manage.py",)
# Command prefix that runs manage.py with every SQL statement logged.
MANAGE_WITH_SQL_LOG = ("-m", "generation.tests.sql_log")

MODELSCOPE_MODEL = "flux-fake"
# Each task of the fake's "slow" scenario needs 17 polls, so about 3.4 s here.
MODELSCOPE_ENV = {
    "MODELSCOPE_POLL_SECONDS": "0.2",
    "MODELSCOPE_POLL_MAX_SECONDS": "0.2",
    "WORKER_LEASE_SECONDS": "2",
    "USER_MAX_IN_FLIGHT": "0",
}


def current_database_url() -> str:
    """Return the URL of the database this test runs on, for a child process."""
    db = connection.settings_dict
    user = quote(db["USER"] or "", safe="")
    password = quote(db["PASSWORD"] or "", safe="")
    credentials = f"{user}:{password}@" if password else f"{user}@"
    return (
        f"postgres://{credentials}{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}"
        f"/{db['NAME']}"
    )


def worker_env(**overrides: str) -> dict[str, str]:
    env = dict(os.environ)
    env["DATABASE_URL"] = current_database_url()
    env["STORAGE_BASE"] = str(settings.MEDIA_ROOT)
    env["LOCAL_RENDER_DELAY_SECONDS"] = "0"
    env["LOG_LEVEL"] = "INFO"
    env.update(overrides)
    return env


class WorkerSubprocess:
    """A `runworker` child process whose log goes to a file."""

    def __init__(
        self,
        log_path: Path,
        *options: str,
        manage: tuple[str, ...] = MANAGE,
        **env: str,
    ) -> None:
        self.log_path = log_path
        # Unlike a pipe, a file does not block a busy worker while no one reads it.
        with log_path.open("w") as log:
            self.process = subprocess.Popen(
                [sys.executable, *manage, "runworker", *options],
                cwd=PROJECT_DIR,
                env=worker_env(**env),
                stdout=subprocess.DEVNULL,
                stderr=log,
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def application_name(self) -> str:
        """The PostgreSQL application_name of this worker's connections."""
        return f"lightsource-runworker:{self.pid}"

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8")

    def claimed_job_ids(self) -> list[str]:
        """Return the ids of the "job claimed" log lines, in log order."""
        return CLAIM_LINE.findall(self.log())

    def wait_for_log(self, text: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log():
            if self.process.poll() is not None:
                pytest.fail(f"worker exited before logging {text!r}:\n{self.log()}")
            if time.monotonic() > deadline:
                pytest.fail(f"worker did not log {text!r} in {timeout} s")
            time.sleep(0.05)

    def wait(self, timeout: float) -> int:
        """Wait for the worker to exit and return its exit code."""
        return self.process.wait(timeout=timeout)

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()


@contextmanager
def worker_launcher(log_dir: Path) -> Iterator[Callable[..., WorkerSubprocess]]:
    """Yield a function that starts workers, and kill them all when the block ends.

    The function takes `runworker` options, an optional `manage` command prefix
    and environment variables as keyword arguments.
    """
    workers: list[WorkerSubprocess] = []

    def start(*options: str, **env: str) -> WorkerSubprocess:
        log_path = log_dir / f"worker-{len(workers)}.log"
        workers.append(WorkerSubprocess(log_path, *options, **env))
        return workers[-1]

    try:
        yield start
    finally:
        for worker in workers:
            worker.kill()


def wait_for(condition: Callable[[], bool], timeout: float, description: str) -> float:
    """Poll `condition` every 20 ms and return the seconds it took to become true."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            pytest.fail(f"{description} did not happen within {timeout} s")
        time.sleep(0.02)
    return time.monotonic() - started


def run_workers_side_by_side(
    start: Callable[..., WorkerSubprocess],
    count: int,
    job_ids: set,
    *options: str,
    timeout: float = 90,
    **env: str,
) -> list[WorkerSubprocess]:
    """Run `count` workers over the queued jobs `job_ids`, then stop them.

    The jobs become due only once every worker is up, so a worker that starts
    quickly cannot drain the queue before the others have started.
    """
    jobs = Job.objects.filter(pk__in=job_ids)
    jobs.update(run_after=timezone.now() + timedelta(hours=1))
    workers = [start("--poll-seconds", "0.5", *options, **env) for _ in range(count)]
    for worker in workers:
        worker.wait_for_log("worker started")
    jobs.update(run_after=timezone.now())
    for queue in set(jobs.values_list("queue", flat=True)):
        notify_job_queued(queue)

    unfinished = jobs.filter(status__in=[Job.Status.QUEUED, Job.Status.RUNNING])
    wait_for(lambda: not unfinished.exists(), timeout, "every job finishing")
    for worker in workers:
        worker.signal(signal.SIGTERM)
    for worker in workers:
        assert worker.wait(timeout=20) == 0, worker.log()[-2000:]
    return workers


def add_modelscope_model(base_url: str) -> ModelSpec:
    """Add MODELSCOPE_MODEL, an image model of a ModelScope provider at `base_url`."""
    provider = Provider.objects.create(
        name="modelscope-fake",
        kind=Provider.Kind.MODELSCOPE,
        base_url=base_url,
        api_key="ms-test-key",
        enabled=True,
    )
    return ModelSpec.objects.create(
        name=MODELSCOPE_MODEL,
        kind=ModelSpec.Kind.IMAGE,
        provider=provider,
        remote_name="MusePublic/489_ckpt_FLUX_1",
        price=20,
        sizes=["512x512"],
        deadline_seconds=60,
    )
