"""The procrastinate app and no-op task of the worker benchmark.

The worker runs it with
`python -m procrastinate --app=benchmarks.procrastinate_app.app worker`. The
connection string comes from PROCRASTINATE_DATABASE_URL.
"""

import os

import procrastinate

app = procrastinate.App(
    connector=procrastinate.PsycopgConnector(
        conninfo=os.environ.get("PROCRASTINATE_DATABASE_URL", "")
    )
)


@app.task(name="noop")
async def noop() -> None:
    """Do nothing, so the benchmark measures the queue alone."""
