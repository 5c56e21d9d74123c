"""The benchmark's four scenarios and the profile of the no-op runs.

Each scenario function starts its processes through the context's
ProcessGroup, waits for them, reads the systems' tables and returns plain
numbers. Times are wall-clock seconds. Every process runs on this machine, so
the timestamps that the workers and PostgreSQL write share one clock.
"""

import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.harness import (
    BENCH_DIR,
    BenchmarkError,
    Postgres,
    ProcessGroup,
    ProcessSampler,
    base_env,
    percentile,
    run_to_end,
    wait_until,
)
from benchmarks.profile_summary import summarize_profile
from benchmarks.systems import (
    PYTHON,
    DjangoTasksDb,
    LightSource,
    Procrastinate,
    RunTimes,
    last_json_line,
)

# A worker that has not drained its queue within this many seconds has failed.
RUN_TIMEOUT = 600.0
PY_SPY = str(BENCH_DIR / ".venv" / "bin" / "py-spy")


@dataclass
class Options:
    jobs: int
    users: int
    concurrencies: list[int]
    procrastinate_concurrency: int
    latency_jobs: int
    latency_spacing: float
    latency_concurrency: int
    slow_jobs: int
    slow_concurrency: int
    slow_seconds: float
    recovery_jobs: int
    profile: bool


@dataclass
class Context:
    postgres: Postgres
    group: ProcessGroup
    log_dir: Path
    options: Options
    lightsource: LightSource
    tasks: DjangoTasksDb
    procrastinate: Procrastinate


@dataclass
class Throughput:
    system: str
    concurrency: int
    jobs: int
    # From the first job's start to the last job's finish.
    active_seconds: float
    # From the worker's spawn to the last job's finish: adds start-up.
    spawn_seconds: float

    @property
    def per_second(self) -> float:
        return self.jobs / self.active_seconds

    @property
    def per_second_from_spawn(self) -> float:
        return self.jobs / self.spawn_seconds


@dataclass
class Latency:
    system: str
    setup: str
    samples: list[float]

    @property
    def p50(self) -> float:
        return percentile(self.samples, 0.50)

    @property
    def p99(self) -> float:
        return percentile(self.samples, 0.99)

    @property
    def maximum(self) -> float:
        return max(self.samples)


@dataclass
class SlowVendor:
    jobs: int
    concurrency: int
    sleep_seconds: float
    active_seconds: float
    spawn_seconds: float
    peak_rss_kib: int
    high_water_kib: int
    peak_connections: int
    samples: int

    @property
    def ideal_seconds(self) -> float:
        return self.jobs / self.concurrency * self.sleep_seconds


@dataclass
class Recovery:
    jobs: int
    # From SIGKILL to the last lease of the killed worker running out.
    lease_left_seconds: float
    # From SIGKILL to the second worker's claim of the last of those jobs.
    recovered_seconds: float


@dataclass
class Results:
    throughput: list[Throughput] = field(default_factory=list)
    latency: list[Latency] = field(default_factory=list)
    slow_vendor: SlowVendor | None = None
    recovery: Recovery | None = None
    profiles: dict[int, dict] = field(default_factory=dict)
    # Keyed by WORKER_DB_THREADS.
    gate_timing: dict[int, dict] = field(default_factory=dict)
    enqueue_seconds: dict[str, float] = field(default_factory=dict)


def seconds_between(times: RunTimes, spawned_at: float, jobs: int, name: str):
    """Return (active, from-spawn) seconds of a run, whose jobs must all be done."""
    if times.done != jobs or times.first_start is None:
        raise BenchmarkError(
            f"{name}: only {times.done} of {jobs} jobs finished; see its log."
        )
    active = (times.last_finish - times.first_start).total_seconds()
    return active, times.last_finish.timestamp() - spawned_at


def run_burst(ctx: Context, name: str, command: list[str], env: dict) -> float:
    """Run a worker that exits once its queue is empty and return its spawn time."""
    process = ctx.group.start(name, command, env)
    code = process.wait(RUN_TIMEOUT)
    if code != 0:
        raise BenchmarkError(f"{name} exited with code {code}; see {process.log_path}")
    return process.started_at


def measure_throughput(ctx: Context, results: Results) -> None:
    """Scenario 1: no-op jobs, one worker process per system, queue filled first."""
    options = ctx.options
    lightsource = ctx.lightsource
    results.enqueue_seconds["lightsource"] = lightsource.prepare_queued(
        options.jobs, options.users
    )
    for concurrency in options.concurrencies:
        lightsource.fresh(with_queued_jobs=True)
        name = f"ls-throughput-c{concurrency}"
        command = lightsource.worker_command(concurrency, burst=True)
        spawned_at = run_burst(
            ctx, name, command, lightsource.env(lightsource.database)
        )
        times = lightsource.run_times()
        active, spawn = seconds_between(times, spawned_at, options.jobs, name)
        captured = lightsource.captured_holds()
        if captured != options.jobs:
            raise BenchmarkError(
                f"{name}: only {captured} of {options.jobs} holds were captured."
            )
        results.throughput.append(
            Throughput(lightsource.name, concurrency, options.jobs, active, spawn)
        )

    tasks = ctx.tasks
    tasks.fresh()
    results.enqueue_seconds["django-tasks-db"] = tasks.enqueue(options.jobs)
    spawned_at = run_burst(
        ctx, "tasks-throughput", tasks.worker_command(burst=True), tasks.env()
    )
    active, spawn = seconds_between(
        tasks.run_times(), spawned_at, options.jobs, "db_worker"
    )
    results.throughput.append(Throughput(tasks.name, 1, options.jobs, active, spawn))

    procrastinate = ctx.procrastinate
    procrastinate.fresh()
    results.enqueue_seconds["procrastinate"] = procrastinate.enqueue(options.jobs)
    concurrency = options.procrastinate_concurrency
    command = procrastinate.worker_command(concurrency, burst=True)
    spawned_at = run_burst(
        ctx, "procrastinate-throughput", command, procrastinate.env()
    )
    active, spawn = seconds_between(
        procrastinate.run_times(), spawned_at, options.jobs, "procrastinate"
    )
    results.throughput.append(
        Throughput(procrastinate.name, concurrency, options.jobs, active, spawn)
    )


def wait_for_log(process, text: str, timeout: float = 60.0) -> None:
    def logged() -> bool:
        if not process.running():
            raise BenchmarkError(f"{process.name} exited; see {process.log_path}")
        return text in process.log()

    wait_until(logged, timeout, f"{process.name} to log {text!r}")


def wait_for_done(system, jobs: int, timeout: float = 120.0) -> None:
    wait_until(
        lambda: system.run_times().done >= jobs,
        timeout,
        f"{system.name} to finish {jobs} jobs",
        interval=0.2,
    )


def measure_latency(ctx: Context, results: Results) -> None:
    """Scenario 2: jobs queued one at a time while an idle worker waits."""
    options = ctx.options
    count, spacing = options.latency_jobs, options.latency_spacing

    lightsource = ctx.lightsource
    lightsource.fresh()
    concurrency = options.latency_concurrency
    worker = ctx.group.start(
        "ls-latency",
        lightsource.worker_command(concurrency, burst=False),
        lightsource.env(lightsource.database),
    )
    wait_until(
        lambda: lightsource.listening(worker.pid), 60, "runworker's LISTEN connection"
    )
    lightsource.enqueue(
        lightsource.database, "noop", count, options.users, spacing=spacing
    )
    wait_for_done(lightsource, count)
    worker.stop()
    setup = f"--concurrency {concurrency}, LISTEN/NOTIFY"
    results.latency.append(
        Latency(lightsource.name, setup, lightsource.start_latencies())
    )

    tasks = ctx.tasks
    tasks.fresh()
    worker = ctx.group.start(
        "tasks-latency", tasks.worker_command(burst=False), tasks.env()
    )
    wait_for_log(worker, "Starting worker")
    tasks.enqueue(count, spacing=spacing)
    wait_for_done(tasks, count)
    worker.stop()
    setup = "polls every 1 s (--interval default)"
    results.latency.append(Latency(tasks.name, setup, tasks.start_latencies()))

    procrastinate = ctx.procrastinate
    procrastinate.fresh()
    concurrency = options.procrastinate_concurrency
    worker = ctx.group.start(
        "procrastinate-latency",
        procrastinate.worker_command(concurrency, burst=False),
        procrastinate.env(),
    )
    wait_for_log(worker, "Starting worker")
    procrastinate.enqueue(count, spacing=spacing)
    wait_for_done(procrastinate, count)
    worker.stop()
    setup = f"--concurrency {concurrency}, LISTEN/NOTIFY"
    results.latency.append(
        Latency(procrastinate.name, setup, procrastinate.start_latencies())
    )


def start_slow_vendor(ctx: Context) -> str:
    """Start benchmarks/slow_vendor.py and return its base URL."""
    vendor = ctx.group.start(
        "slow-vendor", [PYTHON, "-m", "benchmarks.slow_vendor"], base_env()
    )
    wait_for_log(vendor, "listening ", timeout=30)
    address = vendor.log().split("listening ", 1)[1].split()[0]
    return f"http://{address}"


def measure_slow_vendor(ctx: Context, results: Results, vendor_url: str) -> None:
    """Scenario 3: jobs that wait on the fake vendor, one worker, high concurrency."""
    options = ctx.options
    lightsource = ctx.lightsource
    lightsource.fresh()
    jobs, concurrency = options.slow_jobs, options.slow_concurrency
    lightsource.enqueue(
        lightsource.database,
        "sleep",
        jobs,
        options.users,
        base_url=f"{vendor_url}/sleep/{options.slow_seconds:g}",
    )
    worker = ctx.group.start(
        "ls-slow-vendor",
        lightsource.worker_command(concurrency, burst=True),
        lightsource.env(lightsource.database),
    )
    sampler = ProcessSampler(
        ctx.postgres, worker.pid, lightsource.application_name(worker.pid)
    )
    sampler.start()
    try:
        code = worker.wait(RUN_TIMEOUT)
    finally:
        sampler.stop()
    if code != 0:
        raise BenchmarkError(
            f"runworker exited with code {code}; see {worker.log_path}"
        )

    times = lightsource.run_times()
    active, spawn = seconds_between(times, worker.started_at, jobs, "ls-slow-vendor")
    results.slow_vendor = SlowVendor(
        jobs=jobs,
        concurrency=concurrency,
        sleep_seconds=options.slow_seconds,
        active_seconds=active,
        spawn_seconds=spawn,
        peak_rss_kib=sampler.peak_rss_kib,
        high_water_kib=sampler.high_water_kib,
        peak_connections=sampler.peak_connections,
        samples=sampler.samples,
    )


def count_running(ctx: Context, pid: int) -> int:
    return ctx.postgres.query(
        ctx.lightsource.database,
        "SELECT count(*) FROM generation_job WHERE status = 'running'"
        " AND locked_by LIKE %s",
        (f"%:{pid}:%",),
    )[0][0]


def measure_recovery(ctx: Context, results: Results, vendor_url: str) -> None:
    """Scenario 4: time a second worker's takeover of a SIGKILLed worker's jobs."""
    options = ctx.options
    lightsource = ctx.lightsource
    lightsource.fresh()
    jobs = options.recovery_jobs
    # The fake vendor responds long after the benchmark has stopped both workers.
    lightsource.enqueue(
        lightsource.database,
        "sleep",
        jobs,
        options.users,
        base_url=f"{vendor_url}/sleep/600",
    )
    env = lightsource.env(lightsource.database)
    command = lightsource.worker_command(jobs, burst=False)
    first = ctx.group.start("ls-recovery-killed", command, env)
    wait_until(
        lambda: count_running(ctx, first.pid) == jobs, 60, f"{jobs} jobs in flight"
    )
    second = ctx.group.start("ls-recovery-survivor", command, env)
    wait_until(
        lambda: lightsource.listening(second.pid), 60, "the second worker to listen"
    )

    killed_at = time.time()
    first.signal(signal.SIGKILL)
    first.wait(10)
    lease_end = ctx.postgres.query(
        lightsource.database,
        "SELECT max(locked_until) FROM generation_job WHERE locked_by LIKE %s",
        (f"%:{first.pid}:%",),
    )[0][0]
    wait_until(
        lambda: count_running(ctx, second.pid) == jobs,
        120,
        "the second worker to run every job of the killed one",
    )
    last_claim = ctx.postgres.query(
        lightsource.database,
        "SELECT max(started_at) FROM generation_job WHERE locked_by LIKE %s",
        (f"%:{second.pid}:%",),
    )[0][0]
    second.stop()
    results.recovery = Recovery(
        jobs=jobs,
        lease_left_seconds=lease_end.timestamp() - killed_at,
        recovered_seconds=last_claim.timestamp() - killed_at,
    )


def profile_throughput(ctx: Context, results: Results) -> None:
    """Run the no-op scenario under py-spy at the lowest and highest concurrency."""
    lightsource = ctx.lightsource
    for concurrency in sorted(
        {min(ctx.options.concurrencies), max(ctx.options.concurrencies)}
    ):
        lightsource.fresh(with_queued_jobs=True)
        output = ctx.log_dir / f"profile-c{concurrency}.txt"
        command = [
            PY_SPY,
            "record",
            "--idle",
            "--threads",
            "--rate=100",
            "--format=raw",
            f"--output={output}",
            "--",
            *lightsource.worker_command(concurrency, burst=True),
        ]
        run_burst(
            ctx,
            f"ls-profile-c{concurrency}",
            command,
            lightsource.env(lightsource.database),
        )
        results.profiles[concurrency] = summarize_profile(output, concurrency)


def time_gate_calls(ctx: Context, results: Results, vendor_url: str) -> None:
    """Run scenario 3 again in one process with every DatabaseGate call timed.

    Once with the default 2 gate threads and once with 4, to show whether more
    connections would help.
    """
    options = ctx.options
    lightsource = ctx.lightsource
    for threads in (2, 4):
        lightsource.fresh()
        lightsource.enqueue(
            lightsource.database,
            "sleep",
            options.slow_jobs,
            options.users,
            base_url=f"{vendor_url}/sleep/{options.slow_seconds:g}",
        )
        env = lightsource.env(lightsource.database, WORKER_DB_THREADS=str(threads))
        env["DJANGO_SETTINGS_MODULE"] = "lightsource.settings"
        command = [
            PYTHON,
            "-m",
            "benchmarks.gate_timing",
            f"--concurrency={options.slow_concurrency}",
        ]
        name = f"ls-gate-timing-{threads}"
        process = run_to_end(ctx.group, name, command, env, RUN_TIMEOUT)
        results.gate_timing[threads] = last_json_line(process.log())
