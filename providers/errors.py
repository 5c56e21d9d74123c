"""Failures that adapters raise, classified for the retry policy."""

from dataclasses import dataclass


@dataclass
class ProviderError(Exception):
    """A vendor failure with a stable code and a message a user can act on.

    `retryable` is true only when the vendor has not accepted the work yet, so a
    new attempt cannot pay the vendor twice. `retry_after` is in seconds.
    """

    code: str
    message: str
    retryable: bool = False
    retry_after: float | None = None

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"
