"""Run every scenario of the worker benchmark and report the figures.

Called by worker_bench.py once it runs inside benchmarks/.venv.
"""

import argparse
import os
import pickle
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from benchmarks import report, scenarios
from benchmarks.harness import (
    PROJECT_DIR,
    ActivityMonitor,
    BenchmarkError,
    Postgres,
    ProcessGroup,
)
from benchmarks.systems import DjangoTasksDb, LightSource, Procrastinate

USERS = 50


def build_options(args: argparse.Namespace) -> scenarios.Options:
    concurrencies = [int(value) for value in args.concurrency.split(",") if value]
    if not concurrencies or min(concurrencies) < 1:
        raise SystemExit(
            f"--concurrency takes positive integers; got {args.concurrency!r}."
        )
    return scenarios.Options(
        jobs=args.jobs,
        users=USERS,
        concurrencies=concurrencies,
        procrastinate_concurrency=10,
        latency_jobs=200,
        latency_spacing=0.05,
        latency_concurrency=10,
        slow_jobs=1000,
        slow_concurrency=200,
        slow_seconds=2.0,
        recovery_jobs=50,
        profile=not args.no_profile,
    )


def describe_machine(postgres: Postgres) -> report.Machine:
    cpu_model = "unknown"
    with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    memory_kib = 0
    with open("/proc/meminfo", encoding="utf-8") as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal:"):
                memory_kib = int(line.split()[1])
    return report.Machine(
        cpus=len(os.sched_getaffinity(0)),
        cpu_model=cpu_model,
        memory_gib=memory_kib / 1024 / 1024,
        postgres=postgres.version(),
        python=platform.python_version(),
        kernel=platform.release(),
    )


def product_commit() -> tuple[str, bool]:
    """Return the short commit and whether product files differ from it."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=PROJECT_DIR, capture_output=True, text=True
        ).stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    changed = git(
        "status", "--porcelain", "--", ".", ":!benchmarks", ":!docs/benchmarks.md"
    )
    return commit, bool(changed)


def run_scenarios(ctx: scenarios.Context) -> scenarios.Results:
    results = scenarios.Results()
    steps = [
        ("1. no-op throughput", scenarios.measure_throughput),
        ("2. enqueue-to-start latency", scenarios.measure_latency),
    ]
    for title, step in steps:
        print(f"Running {title} ...", flush=True)
        step(ctx, results)

    print("Running 3. slow fake vendor ...", flush=True)
    vendor_url = scenarios.start_slow_vendor(ctx)
    scenarios.measure_slow_vendor(ctx, results, vendor_url)
    print("Running 4. recovery after kill -9 ...", flush=True)
    scenarios.measure_recovery(ctx, results, vendor_url)

    if ctx.options.profile:
        print("Profiling runworker with py-spy ...", flush=True)
        scenarios.profile_throughput(ctx, results)
        print("Timing DatabaseGate calls of scenario 3 ...", flush=True)
        scenarios.time_gate_calls(ctx, results, vendor_url)
    return results


def run_benchmark(args: argparse.Namespace, started: float) -> int:
    options = build_options(args)
    log_dir = Path(tempfile.mkdtemp(prefix="worker-bench-"))
    postgres = Postgres(args.postgres)
    group = ProcessGroup(log_dir)
    ctx = scenarios.Context(
        postgres=postgres,
        group=group,
        log_dir=log_dir,
        options=options,
        lightsource=LightSource(postgres, group, log_dir / "media"),
        tasks=DjangoTasksDb(postgres, group),
        procrastinate=Procrastinate(postgres, group),
    )
    print(f"Logs and profiles go to {log_dir}", flush=True)
    monitor = ActivityMonitor(postgres)
    monitor.start()
    try:
        machine = describe_machine(postgres)
        print("Migrating the LightSource template database ...", flush=True)
        ctx.lightsource.prepare_base()
        results = run_scenarios(ctx)
    except BenchmarkError as error:
        print(f"Benchmark failed: {error}", file=sys.stderr)
        return 1
    finally:
        group.stop_all()
        monitor.stop()

    commit, dirty = product_commit()
    run = report.RunInfo(
        command=shlex.join(["python3", "benchmarks/worker_bench.py", *sys.argv[1:]]),
        date=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        commit=commit,
        dirty=dirty,
        total_seconds=time.monotonic() - started,
        other_sessions=monitor.peak_sessions,
        other_databases=sorted(monitor.databases),
        peak_load=monitor.peak_load,
    )
    with (log_dir / "results.pickle").open("wb") as saved:
        pickle.dump((results, machine, run), saved)
    print()
    print(report.console_report(results, run))
    args.output.write_text(
        report.markdown_page(results, machine, run), encoding="utf-8"
    )
    print(f"\nWrote {args.output}. Logs are in {log_dir}.")
    return 0
