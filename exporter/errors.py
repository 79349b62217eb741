"""The project's error types: what failed, at which stage, and whether a retry can help."""

from __future__ import annotations


class ExporterError(Exception):
    """Base of every error the exporter raises on purpose."""

    retryable: bool = False
    retry_after: float = 0.0  # seconds the server asked us to wait before trying again

    def __init__(self, message: str, *, retryable: bool | None = None) -> None:
        super().__init__(message)
        if retryable is not None:
            self.retryable = retryable


class ConfigError(ExporterError):
    """A setting is missing or invalid; `field` names it as the user wrote it (env var name)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class DiscoveryError(ExporterError):
    """The Kubernetes API could not list Services."""


class KubeError(ExporterError):
    """A Kubernetes API call failed; `status` is the HTTP status (0 for a connection failure); `kind` is
    `malformed` for an answer of the wrong shape, `too_large` for a list over its budget."""

    def __init__(self, message: str, *, status: int = 0, retryable: bool | None = None, kind: str = "error") -> None:
        super().__init__(message, retryable=retryable)
        self.status = status
        self.kind = kind


class QueryError(ExporterError):
    """A PromQL query failed; carries the query, the HTTP status (0 when none was received) and a
    `kind` for counting: timeout, connection, http_4xx, http_5xx, malformed, duplicate_series."""

    def __init__(
        self, message: str, *, query: str, status: int = 0, retryable: bool = False, kind: str | None = None
    ) -> None:
        super().__init__(f"{message} [query: {query}]", retryable=retryable)
        self.query = query
        self.status = status
        self.kind = kind or (f"http_{status // 100}xx" if status else "error")


class SubmitError(ExporterError):
    """Datadog did not accept a submission; `status` is the HTTP status (0 for a connection failure)."""

    def __init__(self, message: str, *, status: int = 0, retryable: bool = False) -> None:
        super().__init__(message, retryable=retryable)
        self.status = status


def retryable_status(status: int) -> bool:
    """HTTP statuses worth retrying: timeouts, throttling and server errors (and no answer at all)."""
    return status in (0, 408, 429) or status >= 500
