#!/usr/bin/env python3
"""Benchmark LightSource's `runworker` against django-tasks-db and procrastinate.

Run it with any Python 3.9 or newer: `python3 benchmarks/worker_bench.py`. The
script creates benchmarks/.venv (the project's requirements plus
benchmarks/requirements.txt) and benchmarks/.venv/procrastinate on first use,
re-runs itself inside the first, measures the four scenarios described in
docs/benchmarks.md, prints a table and rewrites docs/benchmarks.md.

Needs PostgreSQL on 127.0.0.1:5432 that accepts user postgres without a
password; it drops and creates the ls_bench* databases on every run.
"""

import argparse
import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
PROJECT_DIR = BENCH_DIR.parent
VENV_DIR = BENCH_DIR / ".venv"
PROCRASTINATE_VENV_DIR = VENV_DIR / "procrastinate"
ENVIRONMENTS = (
    (VENV_DIR, (PROJECT_DIR / "requirements.txt", BENCH_DIR / "requirements.txt")),
    (PROCRASTINATE_VENV_DIR, (BENCH_DIR / "requirements-procrastinate.txt",)),
)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark runworker against django-tasks-db and procrastinate."
    )
    parser.add_argument(
        "--jobs", type=int, default=2000, help="No-op jobs per throughput run."
    )
    parser.add_argument(
        "--concurrency",
        default="1,10,50",
        help="Comma-separated runworker --concurrency values for the no-op runs.",
    )
    parser.add_argument(
        "--postgres",
        default="postgres://postgres@127.0.0.1:5432",
        help="PostgreSQL server URL without a database name.",
    )
    parser.add_argument(
        "--no-profile",
        action="store_true",
        help="Skip the py-spy and DatabaseGate timing passes (about 2.5 minutes).",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=PROJECT_DIR / "docs" / "benchmarks.md",
        help="Markdown page to rewrite with the figures.",
    )
    return parser.parse_args()


def base_python() -> str:
    """Return the project's Python (3.12 or newer) to build the environments with."""
    project_python = PROJECT_DIR / ".venv" / "bin" / "python"
    if project_python.exists():
        return str(project_python)
    found = subprocess.run(
        [str(PROJECT_DIR / "scripts" / "find-python")],
        capture_output=True,
        text=True,
        check=True,
    )
    return found.stdout.strip()


def ensure_environment(venv: Path, requirement_files: tuple[Path, ...]) -> None:
    """Create `venv` and install the requirement files unless already installed."""
    digest = hashlib.sha256()
    for path in requirement_files:
        digest.update(path.read_bytes())
    stamp = venv / ".benchmark-requirements"
    if stamp.is_file() and stamp.read_text() == digest.hexdigest():
        return

    python = venv / "bin" / "python"
    if not python.exists():
        base = base_python()
        print(f"Creating {venv} with {base}", flush=True)
        subprocess.run([base, "-m", "venv", str(venv)], check=True)
    names = ", ".join(str(path.relative_to(PROJECT_DIR)) for path in requirement_files)
    print(f"Installing {names} into {venv}", flush=True)
    requirements = [arg for path in requirement_files for arg in ("-r", str(path))]
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", *requirements], check=True
    )
    stamp.write_text(digest.hexdigest())


def enter_environment() -> None:
    """Build the environments if needed and re-run this script in benchmarks/.venv."""
    for venv, requirement_files in ENVIRONMENTS:
        ensure_environment(venv, requirement_files)
    if Path(sys.prefix).resolve() != VENV_DIR.resolve():
        python = str(VENV_DIR / "bin" / "python")
        os.execv(python, [python, str(Path(__file__).resolve()), *sys.argv[1:]])


def main() -> int:
    options = parse_args()
    enter_environment()
    sys.path.insert(0, str(PROJECT_DIR))
    from benchmarks.run import run_benchmark

    return run_benchmark(options, started=time.monotonic())


if __name__ == "__main__":
    sys.exit(main())
