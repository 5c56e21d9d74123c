"""The contract between the worker and the vendor adapters."""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from providers.errors import ProviderError

__all__ = [
    "Adapter",
    "GenerationRequest",
    "ProgressCallback",
    "ProviderError",
    "ResultFile",
]

# Called with a percentage from 0 to 100. It raises when the job must stop
# (canceled, lease lost, worker shutting down), so adapters let it propagate.
ProgressCallback = Callable[[int], None]


@dataclass(frozen=True)
class GenerationRequest:
    """Everything an adapter needs to run one job, detached from the ORM."""

    job_id: str
    kind: str  # "image" or "video"
    remote_model: str
    prompt: str
    params: dict[str, Any]
    base_url: str = ""
    api_key: str = ""
    limits: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ResultFile:
    """One generated file, held in memory until ingest stores it."""

    content: bytes
    mime_type: str


class Adapter(Protocol):
    kind: ClassVar[str]

    def generate(
        self, request: GenerationRequest, progress: ProgressCallback
    ) -> list[ResultFile]:
        """Run the generation and return its files; raise ProviderError on failure."""
        ...
