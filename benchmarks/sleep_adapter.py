"""An adapter that waits on a slow fake vendor, as a real vendor call would."""

import requests

from providers.adapters.base import GenerationRequest, JobContext, ResultFile
from providers.errors import ProviderError

# Connect and read timeouts in seconds. The read timeout is above the longest
# sleep that worker_bench.py requests from benchmarks/slow_vendor.py.
TIMEOUTS = (5.0, 600.0)


class SleepAdapter:
    """An adapter that GETs the provider's base_url and returns no files.

    The fake vendor (benchmarks/slow_vendor.py) responds after the number of
    seconds named in the URL path, so a job holds a thread and a socket open
    for that long, as it would while waiting on a real vendor.
    """

    kind = "bench_sleep"
    empty_result_ok = True

    def generate(
        self, request: GenerationRequest, context: JobContext
    ) -> list[ResultFile]:
        try:
            response = requests.get(request.base_url, timeout=TIMEOUTS)
        except requests.RequestException as error:
            message = f"The fake vendor was not reached: {error}"
            raise ProviderError("vendor_unreachable", message) from error
        if response.status_code != 200:
            message = f"The fake vendor returned HTTP {response.status_code}."
            raise ProviderError("vendor_error", message, retryable=False)
        return []
