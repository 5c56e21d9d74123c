"""Processes, databases and samplers shared by the worker benchmark's scenarios."""

import math
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg2
import psycopg2.extensions

BENCH_DIR = Path(__file__).resolve().parent
PROJECT_DIR = BENCH_DIR.parent


class BenchmarkError(RuntimeError):
    """A scenario could not be run or produced results that cannot be trusted."""


class Postgres:
    """The PostgreSQL server that every benchmark database lives on."""

    def __init__(self, server_url: str) -> None:
        # A URL without a database name, e.g. postgres://postgres@127.0.0.1:5432.
        self.server_url = server_url.rstrip("/")

    def url(self, database: str, scheme: str = "postgres") -> str:
        return f"{scheme}://{self.server_url.split('://', 1)[1]}/{database}"

    def connect(self, database: str = "postgres", application_name: str = "bench"):
        connection = psycopg2.connect(
            self.url(database), application_name=application_name
        )
        connection.set_isolation_level(psycopg2.extensions.ISOLATION_LEVEL_AUTOCOMMIT)
        return connection

    def recreate(self, database: str, template: str | None = None) -> None:
        """Drop `database` (ending its sessions) and create it, empty or as a copy."""
        copy = f' TEMPLATE "{template}"' if template else ""
        self._administer(
            f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)',
            f'CREATE DATABASE "{database}"{copy}',
        )

    def drop(self, database: str) -> None:
        self._administer(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')

    def _administer(self, *statements: str) -> None:
        # Not `with connection:`, which would wrap the statements in a
        # transaction, where CREATE and DROP DATABASE are not allowed.
        admin = self.connect()
        try:
            with admin.cursor() as cursor:
                for statement in statements:
                    cursor.execute(statement)
        finally:
            admin.close()

    def query(self, database: str, sql: str, params: tuple = ()) -> list[tuple]:
        connection = self.connect(database)
        try:
            with connection.cursor() as cursor:
                cursor.execute(sql, params)
                return cursor.fetchall()
        finally:
            connection.close()

    def version(self) -> str:
        return self.query("postgres", "SHOW server_version")[0][0]


class Process:
    """A child process started from the project folder, its output in a log file."""

    def __init__(
        self, name: str, command: list[str], env: dict[str, str], log_dir: Path
    ) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self.started_at = time.time()
        # A file, unlike a pipe, never blocks a busy worker whose output no
        # process reads.
        with self.log_path.open("w") as log:
            self.popen = subprocess.Popen(
                command,
                cwd=PROJECT_DIR,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.pid = self.popen.pid

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def running(self) -> bool:
        return self.popen.poll() is None

    def wait(self, timeout: float) -> int:
        """Wait for the process to exit and return its exit code."""
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise BenchmarkError(
                f"{self.name} did not exit within {timeout:.0f} s; see {self.log_path}"
            ) from None

    def signal(self, signum: int) -> None:
        if self.running():
            self.popen.send_signal(signum)

    def stop(self, timeout: float = 15.0) -> None:
        """Send SIGTERM, a second SIGTERM after 2 s, and SIGKILL after `timeout`."""
        if not self.running():
            return
        self.signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout=2.0)
            return
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        if self.running():
            self.popen.kill()
        self.popen.wait()


@dataclass
class ProcessGroup:
    """Every process a benchmark run starts, so all are stopped however it ends."""

    log_dir: Path
    processes: list[Process] = field(default_factory=list)

    def start(self, name: str, command: list[str], env: dict[str, str]) -> Process:
        process = Process(name, command, env, self.log_dir)
        self.processes.append(process)
        return process

    def stop_all(self) -> None:
        for process in reversed(self.processes):
            process.stop()


def run_to_end(
    group: ProcessGroup,
    name: str,
    command: list[str],
    env: dict[str, str],
    timeout: float,
) -> Process:
    """Run a command to its end and raise BenchmarkError when it fails."""
    process = group.start(name, command, env)
    code = process.wait(timeout)
    if code != 0:
        tail = "\n".join(process.log().splitlines()[-20:])
        raise BenchmarkError(f"{name} exited with code {code}:\n{tail}")
    return process


def wait_until(condition, timeout: float, description: str, interval: float = 0.05):
    """Call `condition` until it returns a true value, and return that value."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise BenchmarkError(
                f"Timed out after {timeout:.0f} s waiting for {description}."
            )
        time.sleep(interval)


def read_status_kib(pid: int, field_name: str) -> int | None:
    """Return a kB field (VmRSS, VmHWM) of /proc/<pid>/status, or None if gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(f"{field_name}:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


class ProcessSampler(threading.Thread):
    """A thread that samples one process's memory and database connections.

    It samples every `interval` seconds. Connections are the backends in
    pg_stat_activity whose application_name is `application_name`. `runworker`
    names all its connections "lightsource-runworker:<pid>", the LISTEN
    connection included.
    """

    def __init__(
        self,
        postgres: Postgres,
        pid: int,
        application_name: str,
        interval: float = 0.05,
    ) -> None:
        super().__init__(name=f"sampler-{pid}", daemon=True)
        self.pid = pid
        self.application_name = application_name
        self.interval = interval
        self.connection = postgres.connect(application_name="bench-sampler")
        self.stopping = threading.Event()
        self.samples = 0
        self.peak_connections = 0
        self.peak_rss_kib = 0
        self.high_water_kib = 0

    def run(self) -> None:
        with self.connection.cursor() as cursor:
            while not self.stopping.is_set():
                self._sample(cursor)
                self.stopping.wait(self.interval)
        self.connection.close()

    def _sample(self, cursor) -> None:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
            (self.application_name,),
        )
        self.peak_connections = max(self.peak_connections, cursor.fetchone()[0])
        rss = read_status_kib(self.pid, "VmRSS")
        high_water = read_status_kib(self.pid, "VmHWM")
        if rss is not None:
            self.peak_rss_kib = max(self.peak_rss_kib, rss)
        if high_water is not None:
            self.high_water_kib = max(self.high_water_kib, high_water)
        self.samples += 1

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=5)


def percentile(values: list[float], fraction: float) -> float:
    """Return the nearest-rank percentile of `values` (fraction 0.5 for p50)."""
    if not values:
        raise BenchmarkError("No samples to take a percentile of.")
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def base_env(**overrides: str) -> dict[str, str]:
    """Return this process's environment with `overrides`, for a child process."""
    env = dict(os.environ)
    env.pop("DJANGO_SETTINGS_MODULE", None)
    env.update(overrides)
    return env


class ActivityMonitor(threading.Thread):
    """A thread that looks for other programs' PostgreSQL sessions once a second.

    Another program using the server or the CPUs during a run skews its
    figures, so the report names the databases such sessions were in.
    """

    def __init__(self, postgres: Postgres, interval: float = 1.0) -> None:
        super().__init__(name="activity-monitor", daemon=True)
        self.connection = postgres.connect(application_name="bench-monitor")
        self.interval = interval
        self.stopping = threading.Event()
        self.peak_sessions = 0
        self.databases: set[str] = set()
        self.peak_load = 0.0

    def run(self) -> None:
        with self.connection.cursor() as cursor:
            while not self.stopping.is_set():
                cursor.execute(
                    "SELECT datname FROM pg_stat_activity"
                    " WHERE backend_type = 'client backend'"
                    " AND pid <> pg_backend_pid()"
                    " AND coalesce(datname, '') NOT LIKE 'ls\\_bench%%'"
                    " AND application_name NOT LIKE 'bench%%'"
                )
                names = [row[0] or "?" for row in cursor.fetchall()]
                self.peak_sessions = max(self.peak_sessions, len(names))
                self.databases.update(names)
                with open("/proc/loadavg", encoding="ascii") as loadavg:
                    self.peak_load = max(
                        self.peak_load, float(loadavg.read().split()[0])
                    )
                self.stopping.wait(self.interval)
        self.connection.close()

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=5)
