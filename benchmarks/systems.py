"""The three job queues under test: how to set each up, fill it, run it, read it.

Every system gets its own database on the same PostgreSQL server. Timestamps
come from each system's own tables: LightSource's generation_job,
django-tasks-db's DBTaskResult and procrastinate's procrastinate_events.
"""

import json
import sys
from dataclasses import dataclass
from datetime import datetime

from benchmarks.harness import (
    BENCH_DIR,
    BenchmarkError,
    Postgres,
    ProcessGroup,
    base_env,
    run_to_end,
)

# Python of benchmarks/.venv: the project's requirements plus django-tasks-db.
PYTHON = sys.executable
# procrastinate needs psycopg 3, and Django prefers psycopg 3 over psycopg2
# when both are installed, so procrastinate gets an environment of its own and
# LightSource keeps the psycopg2 driver it ships with.
PROCRASTINATE_PYTHON = str(BENCH_DIR / ".venv" / "procrastinate" / "bin" / "python")

EXTRA_ADAPTERS = (
    "bench_noop=benchmarks.noop_adapter.NoopAdapter,"
    "bench_sleep=benchmarks.sleep_adapter.SleepAdapter"
)
SETUP_TIMEOUT = 300.0


@dataclass
class RunTimes:
    """Counts and times that one system's tables record for a batch of jobs."""

    done: int
    first_start: datetime | None
    last_finish: datetime | None


def last_json_line(text: str) -> dict:
    """Return the JSON object on the last line of an enqueue command's output."""
    for line in reversed(text.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise BenchmarkError(f"No JSON summary in the output:\n{text[-2000:]}")


class LightSource:
    """LightSource's `runworker`, with jobs queued through submit_job."""

    name = "LightSource runworker"
    database = "ls_bench"
    # Migrated, with nothing queued.
    base_database = "ls_bench_base"
    # The base plus the no-op jobs of the throughput scenario, copied per run.
    queued_database = "ls_bench_queued"

    def __init__(self, postgres: Postgres, group: ProcessGroup, media_dir) -> None:
        self.postgres = postgres
        self.group = group
        self.media_dir = media_dir

    def env(self, database: str, **overrides: str) -> dict[str, str]:
        return base_env(
            DATABASE_URL=self.postgres.url(database),
            EXTRA_ADAPTERS=EXTRA_ADAPTERS,
            STORAGE_BASE=str(self.media_dir),
            **overrides,
        )

    def prepare_base(self) -> None:
        self.postgres.recreate(self.base_database)
        command = [PYTHON, "manage.py", "migrate", "--noinput", "-v", "0"]
        env = self.env(self.base_database)
        run_to_end(self.group, "ls-migrate", command, env, SETUP_TIMEOUT)

    def prepare_queued(self, count: int, users: int) -> float:
        """Fill the queued template with `count` no-op jobs and return the seconds."""
        self.postgres.recreate(self.queued_database, template=self.base_database)
        return self.enqueue(self.queued_database, "noop", count, users)

    def fresh(self, with_queued_jobs: bool = False) -> None:
        """Recreate the run database, empty or with the queued no-op jobs."""
        template = self.queued_database if with_queued_jobs else self.base_database
        self.postgres.recreate(self.database, template=template)

    def enqueue(
        self,
        database: str,
        kind: str,
        count: int,
        users: int,
        spacing: float = 0.0,
        base_url: str = "",
    ) -> float:
        """Submit jobs with submit_job in a child process and return its seconds."""
        command = [
            PYTHON,
            "-m",
            "benchmarks.lightsource_jobs",
            f"--kind={kind}",
            f"--count={count}",
            f"--users={users}",
            f"--spacing={spacing}",
            f"--base-url={base_url}",
        ]
        env = self.env(database, LOG_LEVEL="WARNING")
        env["DJANGO_SETTINGS_MODULE"] = "lightsource.settings"
        process = run_to_end(self.group, f"ls-enqueue-{kind}", command, env, 600)
        return last_json_line(process.log())["seconds"]

    def worker_command(self, concurrency: int, burst: bool) -> list[str]:
        command = [PYTHON, "manage.py", "runworker", f"--concurrency={concurrency}"]
        return [*command, "--burst"] if burst else command

    def application_name(self, pid: int) -> str:
        return f"lightsource-runworker:{pid}"

    def run_times(self) -> RunTimes:
        row = self.postgres.query(
            self.database,
            "SELECT count(*) FILTER (WHERE status = 'completed'), min(started_at),"
            " max(finished_at) FROM generation_job",
        )[0]
        return RunTimes(*row)

    def captured_holds(self) -> int:
        return self.postgres.query(
            self.database,
            "SELECT count(*) FROM billing_hold h JOIN billing_ledgerentry e"
            " ON e.hold_id = h.id AND e.kind = 'capture' WHERE h.status = 'captured'",
        )[0][0]

    def start_latencies(self) -> list[float]:
        rows = self.postgres.query(
            self.database,
            "SELECT extract(epoch FROM started_at - created_at) FROM generation_job"
            " WHERE status = 'completed'",
        )
        return [float(seconds) for (seconds,) in rows]

    def listening(self, pid: int) -> bool:
        """Return True once the worker's LISTEN connection is open."""
        rows = self.postgres.query(
            "postgres",
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE application_name = %s AND query ILIKE 'LISTEN%%'",
            (self.application_name(pid),),
        )
        return rows[0][0] > 0


class DjangoTasksDb:
    """django-tasks-db's `db_worker`, in the project under benchmarks/compare/."""

    name = "django-tasks-db db_worker"
    database = "ls_bench_tasks"
    table = "django_tasks_database_dbtaskresult"

    def __init__(self, postgres: Postgres, group: ProcessGroup) -> None:
        self.postgres = postgres
        self.group = group

    def env(self, **overrides: str) -> dict[str, str]:
        return base_env(
            DATABASE_URL=self.postgres.url(self.database),
            DJANGO_SETTINGS_MODULE="benchmarks.compare.settings",
            **overrides,
        )

    def fresh(self) -> None:
        self.postgres.recreate(self.database)
        command = [PYTHON, "-m", "django", "migrate", "--noinput", "-v", "0"]
        run_to_end(self.group, "tasks-migrate", command, self.env(), SETUP_TIMEOUT)

    def enqueue(self, count: int, spacing: float = 0.0) -> float:
        command = [
            PYTHON,
            "-m",
            "benchmarks.compare.enqueue",
            f"--count={count}",
            f"--spacing={spacing}",
        ]
        env = self.env(LOG_LEVEL="WARNING")
        process = run_to_end(self.group, "tasks-enqueue", command, env, 600)
        return last_json_line(process.log())["seconds"]

    def worker_command(self, burst: bool) -> list[str]:
        # Without --no-startup-delay the worker first sleeps up to 1 s at random.
        command = [PYTHON, "-m", "django", "db_worker", "--no-startup-delay"]
        return [*command, "--batch"] if burst else command

    def run_times(self) -> RunTimes:
        row = self.postgres.query(
            self.database,
            "SELECT count(*) FILTER (WHERE status = 'SUCCESSFUL'), min(started_at),"
            f" max(finished_at) FROM {self.table}",
        )[0]
        return RunTimes(*row)

    def start_latencies(self) -> list[float]:
        rows = self.postgres.query(
            self.database,
            "SELECT extract(epoch FROM started_at - enqueued_at)"
            f" FROM {self.table} WHERE status = 'SUCCESSFUL'",
        )
        return [float(seconds) for (seconds,) in rows]


class Procrastinate:
    """procrastinate's worker, with the app in benchmarks/procrastinate_app.py."""

    name = "procrastinate worker"
    database = "ls_bench_procrastinate"
    app = "benchmarks.procrastinate_app.app"

    def __init__(self, postgres: Postgres, group: ProcessGroup) -> None:
        self.postgres = postgres
        self.group = group

    def env(self) -> dict[str, str]:
        url = self.postgres.url(self.database, scheme="postgresql")
        return base_env(PROCRASTINATE_DATABASE_URL=url)

    def fresh(self) -> None:
        self.postgres.recreate(self.database)
        command = [
            PROCRASTINATE_PYTHON,
            "-m",
            "procrastinate",
            f"--app={self.app}",
            "schema",
            "--apply",
        ]
        run_to_end(self.group, "procrastinate-schema", command, self.env(), 120)

    def enqueue(self, count: int, spacing: float = 0.0) -> float:
        command = [
            PROCRASTINATE_PYTHON,
            "-m",
            "benchmarks.procrastinate_enqueue",
            f"--count={count}",
            f"--spacing={spacing}",
        ]
        process = run_to_end(
            self.group, "procrastinate-enqueue", command, self.env(), 600
        )
        return last_json_line(process.log())["seconds"]

    def worker_command(self, concurrency: int, burst: bool) -> list[str]:
        command = [
            PROCRASTINATE_PYTHON,
            "-m",
            "procrastinate",
            f"--app={self.app}",
            "worker",
            f"--concurrency={concurrency}",
        ]
        return [*command, "--one-shot"] if burst else command

    def run_times(self) -> RunTimes:
        row = self.postgres.query(
            self.database,
            "SELECT (SELECT count(*) FROM procrastinate_jobs"
            "         WHERE status = 'succeeded'),"
            " min(at) FILTER (WHERE type = 'started'),"
            " max(at) FILTER (WHERE type = 'succeeded')"
            " FROM procrastinate_events",
        )[0]
        return RunTimes(*row)

    def start_latencies(self) -> list[float]:
        rows = self.postgres.query(
            self.database,
            "SELECT extract(epoch FROM started.at - deferred.at)"
            " FROM procrastinate_events started"
            " JOIN procrastinate_events deferred"
            "   ON deferred.job_id = started.job_id AND deferred.type = 'deferred'"
            " WHERE started.type = 'started'",
        )
        return [float(seconds) for (seconds,) in rows]
