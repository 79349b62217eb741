"""Runs PromQL through prometheus-api-client: timeouts, extra headers, retries, typed errors, vectors.

Every failure leaves as a `QueryError` carrying the query: HTTP errors (with Prometheus's own error
text), timeouts, refused connections, malformed JSON, ambiguous (duplicate) vectors. `warnings` in a
response are logged. Non-200 answers are turned into errors by a response hook on the injected
`requests.Session`, so prometheus-api-client never swallows Prometheus's error text.
"""

from __future__ import annotations

import json
import math
from collections.abc import Hashable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qs, urlparse

from exporter.errors import QueryError, retryable_status

if TYPE_CHECKING:  # the HTTP libraries load with the first client (start-up: `vector_by` needs none of them)
    import requests

    from exporter.retry import RetryPolicy


def _log() -> Any:
    import structlog

    return structlog.get_logger("exporter.query.prometheus")


Sample = tuple[dict[str, str], float]
K = TypeVar("K", bound=Hashable)


def _query_of(response: requests.Response) -> str:
    params = parse_qs(urlparse(response.url).query)
    if not params.get("query") and isinstance(response.request.body, str):
        params = parse_qs(response.request.body)
    return params.get("query", ["?"])[0]


def _check_response(response: requests.Response, *args: Any, **kwargs: Any) -> None:
    """requests response hook: non-200 → QueryError with Prometheus's error text; warnings → log."""
    if response.status_code != 200:
        try:
            body = response.json()
            text = f"{body.get('errorType', 'error')}: {body.get('error', '')}"
        except ValueError:
            text = response.text[:300].strip() or response.reason
        error = QueryError(
            f"Prometheus answered {response.status_code}: {text}",
            query=_query_of(response),
            status=response.status_code,
            retryable=retryable_status(response.status_code),
        )
        error.retry_after = _retry_after(response.headers.get("Retry-After"))
        raise error
    if b'"warnings"' in response.content:
        try:
            warnings = response.json().get("warnings") or []
        except ValueError:
            return  # reported as malformed JSON by the caller
        for warning in warnings:
            _log().warning("prometheus warning", warning=warning, query=_query_of(response))


def _retry_after(value: str | None) -> float:
    try:
        return max(0.0, float(value)) if value else 0.0
    except ValueError:
        return 0.0


def to_float(value: str) -> float:
    """A sample value as Prometheus encodes it ("1.5", "NaN", "+Inf") as a float."""
    return float(value)


class PrometheusClient:
    """Instant queries against a Prometheus-compatible API (Prometheus, Thanos, Mimir)."""

    def __init__(
        self,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        timeout: float = 10.0,
        retry: RetryPolicy | None = None,
        session: requests.Session | None = None,
        parallel: int = 4,
    ) -> None:
        from concurrent.futures import ThreadPoolExecutor

        import requests
        from prometheus_api_client import PrometheusConnect
        from urllib3.util import Retry

        from exporter.retry import RetryPolicy

        self.url = url.rstrip("/")
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.requests_made = 0
        self._pool = ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="promql")
        self._session = session or requests.Session()
        self._session.hooks["response"].append(_check_response)
        self._conn = PrometheusConnect(
            url=self.url,
            headers=dict(headers or {}),
            session=self._session,
            timeout=timeout,  # type: ignore[arg-type,unused-ignore]  # annotated int; requests takes float
            # Retries are ours (tenacity). read=False lets a read timeout surface as a timeout, not as a
            # "max retries exceeded" connection error.
            retry=Retry(total=0, read=False, raise_on_status=False),
        )

    def close(self) -> None:
        self._pool.shutdown(wait=False)
        self._conn.close()

    def query_all(self, queries: Mapping[K, str], *, at: float) -> dict[K, list[Sample] | QueryError]:
        """Run several queries concurrently (on a pool kept for the client's life), each with retries;
        a failed query yields its QueryError instead of raising, so the others still count."""
        futures = {name: self._pool.submit(self.query, text, at=at) for name, text in queries.items()}
        answers: dict[K, list[Sample] | QueryError] = {}
        for name, future in futures.items():
            try:
                answers[name] = future.result()
            except QueryError as e:
                answers[name] = e
        return answers

    def query(self, promql: str, *, at: float) -> list[Sample]:
        """Evaluate `promql` at unix time `at`; a list of (labels, value) for an instant vector."""
        from exporter.logs import display_url
        from exporter.retry import call

        return call(
            lambda: self._query_once(promql, at), what=f"GET {display_url(self.url)}/api/v1/query", policy=self.retry
        )

    def _query_once(self, promql: str, at: float) -> list[Sample]:
        import requests
        import urllib3
        from prometheus_api_client.exceptions import PrometheusApiClientException

        from exporter.logs import display_url

        self.requests_made += 1
        params = {"time": f"{at:.3f}", "timeout": f"{self.timeout:g}s"}
        _log().debug("promql", url=display_url(self.url), query=promql, at=at)
        try:
            result = self._conn.custom_query(promql, params=params)
        except QueryError:
            raise
        except requests.Timeout as e:
            raise QueryError(
                f"Prometheus timed out after {self.timeout:g}s", query=promql, retryable=True, kind="timeout"
            ) from e
        except (requests.ConnectionError, urllib3.exceptions.HTTPError) as e:
            raise QueryError(
                f"cannot reach Prometheus at {display_url(self.url)}: {_root(e)}",
                query=promql,
                retryable=True,
                kind="connection",
            ) from e
        except (ValueError, KeyError, TypeError) as e:  # JSON that is not a Prometheus answer
            raise QueryError(
                f"malformed answer from Prometheus: {e}", query=promql, retryable=True, kind="malformed"
            ) from e
        except (PrometheusApiClientException, requests.RequestException) as e:
            raise QueryError(f"Prometheus query failed: {e}", query=promql) from e
        try:
            return [(dict(item["metric"]), to_float(item["value"][1])) for item in result]
        except (KeyError, IndexError, TypeError, ValueError) as e:
            raise QueryError(
                f"not an instant vector: {json.dumps(result)[:200]}", query=promql, kind="malformed"
            ) from e


def _root(exc: BaseException) -> str:
    while exc.__cause__ is not None or exc.__context__ is not None:
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return type(exc).__name__


def vector_by(samples: Sequence[Sample], labels: Sequence[str], *, query: str) -> dict[tuple[str, ...], float]:
    """Key each sample by the values of `labels`; NaN and ±Inf are dropped (they mean no data)."""
    out: dict[tuple[str, ...], float] = {}
    seen: set[tuple[str, ...]] = set()
    for metric, value in samples:
        key = tuple(metric.get(label, "") for label in labels)
        if key in seen:
            raise QueryError(
                f"duplicate series for {dict(zip(labels, key, strict=True))}", query=query, kind="duplicate_series"
            )
        seen.add(key)
        if math.isfinite(value):
            out[key] = value
    return out
