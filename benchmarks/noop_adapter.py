"""An adapter that returns at once, so a benchmark measures the queue alone."""

from providers.adapters.base import GenerationRequest, JobContext, ResultFile


class NoopAdapter:
    """An adapter that returns no files without calling any vendor.

    `empty_result_ok` lets the worker complete a job that returned no files,
    so a no-op job still goes through claim, run and the checked completion.
    """

    kind = "bench_noop"
    empty_result_ok = True

    def generate(
        self, request: GenerationRequest, context: JobContext
    ) -> list[ResultFile]:
        return []
