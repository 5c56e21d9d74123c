"""The contract between the worker and the vendor adapters.

Adapters speak one wire protocol each and never touch the ORM: the worker gives
them a GenerationRequest and a JobContext, and stores what they return.
"""

from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from providers.errors import ProviderError

__all__ = [
    "Adapter",
    "GenerationRequest",
    "JobContext",
    "ProviderError",
    "ReferenceImage",
    "ResultFile",
    "VendorCall",
]


@dataclass(frozen=True)
class ReferenceImage:
    """An image from the user's library, for image-to-image and image-to-video."""

    content: bytes
    mime_type: str
    width: int
    height: int


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
    provider_name: str = ""
    limits: dict[str, Any] = field(default_factory=dict)
    # The vendor task this job already started, when a worker resumes it.
    remote_task_id: str = ""
    # The job's stored progress when this attempt began.
    progress: int = 0
    reference: ReferenceImage | None = None

    @property
    def deadline_seconds(self) -> float:
        return float(self.limits.get("deadline_seconds") or 600)


@dataclass(frozen=True)
class ResultFile:
    """One generated file, checked and stored by the worker's ingest."""

    content: bytes
    mime_type: str


@dataclass
class VendorCall:
    """A summary of one vendor HTTP call for staff, with secrets already redacted."""

    method: str
    url: str
    status: int | None
    duration_ms: int
    request_excerpt: str = ""
    response_excerpt: str = ""
    error: str = ""


class JobContext(Protocol):
    """The worker's side of a running job, handed to the adapter."""

    def progress(self, percent: int) -> None:
        """Record progress from 0 to 100.

        Raises when the job must stop (canceled, lease lost, worker stopping);
        adapters let that exception propagate.
        """

    def save_task_id(self, task_id: str) -> None:
        """Store the vendor's task id on the job before the first poll, so a
        restarted worker resumes that task instead of submitting (and paying) again.
        """

    def record_call(self, call: VendorCall) -> None:
        """Keep a redacted summary of a vendor call for staff."""

    def should_stop(self) -> bool:
        """Return True when the job was canceled or the worker is stopping."""


class Adapter(Protocol):
    kind: ClassVar[str]

    def generate(
        self, request: GenerationRequest, context: JobContext
    ) -> list[ResultFile]:
        """Run the generation and return its files; raise ProviderError on failure."""
        ...
