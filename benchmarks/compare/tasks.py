"""The no-op task that db_worker runs in the benchmark."""

from django.tasks import task


@task
def noop() -> None:
    """Do nothing, so the benchmark measures the queue alone."""
