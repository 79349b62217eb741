"""One retry policy for every upstream call (Prometheus, Datadog, Kubernetes): tenacity, typed errors, logs.

Retries only what `ExporterError.retryable` says can help, backs off exponentially, waits at least what
the server asked for (`retry_after`, e.g. Datadog's X-RateLimit-Reset), and logs every failed attempt as
`attempt 2/3 failed; will retry`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import structlog
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt

from exporter.errors import ExporterError

T = TypeVar("T")
log = structlog.get_logger("exporter.retry")


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 3
    base_wait: float = 0.5
    max_wait: float = 10.0
    sleep: Callable[[float], None] = time.sleep


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, ExporterError) and exc.retryable


def call(fn: Callable[[], T], *, what: str, policy: RetryPolicy) -> T:
    """Run `fn`, retrying retryable ExporterErrors; re-raise the last error when attempts run out."""

    def wait(state: RetryCallState) -> float:
        backoff = policy.base_wait * 2.0 ** (state.attempt_number - 1)
        exc = state.outcome.exception() if state.outcome else None
        asked = exc.retry_after if isinstance(exc, ExporterError) else 0.0
        return min(policy.max_wait, max(backoff, asked))

    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        log.warning(
            f"attempt {state.attempt_number}/{policy.attempts} failed; will retry",
            call=what,
            error=str(exc),
            wait_s=round(state.upcoming_sleep, 3),
        )

    retrying = Retrying(
        stop=stop_after_attempt(policy.attempts),
        wait=wait,
        retry=retry_if_exception(_retryable),
        before_sleep=before_sleep,
        sleep=policy.sleep,
        reraise=True,
    )
    return retrying(fn)
