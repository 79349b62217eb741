"""Runs PromQL through prometheus-api-client: timeouts, extra headers, retries, typed errors, vectors.

Every failure leaves as a `QueryError` carrying the query: HTTP errors (with Prometheus's own error
text), timeouts, refused connections, malformed or cut JSON (retried), answers over the size limit,
ambiguous (duplicate) vectors. `warnings` in a response are logged. A response hook on the injected
`requests.Session` reads every answer itself, at most `max_answer_bytes`, and parses it once (the raw
bytes are released before the vector is built); non-200 answers become errors there, so
prometheus-api-client never swallows Prometheus's error text. Samples that are not finite never
become a figure: `vector_by` sets them aside in `Vector.non_finite`.
"""

from __future__ import annotations

import json
import math
import operator
import threading
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qs, urlparse

from exporter.errors import QueryError, retryable_status
from exporter.logs import display_url

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


DEFAULT_MAX_ANSWER_BYTES = 6 * 1024 * 1024  # keeps the daemon (four answers) inside 256Mi: docs/reliability.md


def timeout_param(seconds: float) -> str:
    """A timeout as Prometheus's duration grammar accepts it: whole milliseconds (`2500ms`, never `2.5s`)."""
    return f"{max(1, round(seconds * 1000))}ms"


def _read_bounded(response: requests.Response, limit: int) -> bytes:
    """The body, decoded, at most `limit` bytes; QueryError when larger or cut short."""
    import urllib3

    chunks: list[bytes] = []
    size = 0
    try:
        for chunk in response.raw.stream(256 * 1024, decode_content=True):
            size += len(chunk)
            if size > limit:
                response.close()
                raise QueryError(
                    f"answer larger than EXPORTER_PROMETHEUS_MAX_ANSWER_BYTES={limit}; narrow "
                    "EXPORTER_NAMESPACES or the label selector, or raise the limit with the memory limit",
                    query=_query_of(response),
                    kind="too_large",
                )
            chunks.append(chunk)
    except (urllib3.exceptions.HTTPError, OSError) as e:  # cut short: IncompleteRead, ProtocolError, reset
        raise QueryError(
            f"malformed answer from Prometheus: body cut short ({type(e).__name__})",
            query=_query_of(response),
            retryable=True,
            kind="malformed",
        ) from None
    return b"".join(chunks)


_DECODE = threading.Lock()


class _Samples(list[Sample]):
    """An instant vector decoded in the response hook (each parsed item released as it is read)."""

    @classmethod
    def decode(cls, result: list[Any], *, query: str) -> _Samples:
        samples = cls()
        append = samples.append
        try:
            while result:
                item = result.pop()  # frees the item's dict and value list as the samples grow
                metric = item["metric"]
                if type(metric) is not dict:
                    raise TypeError("metric is not an object")
                append((metric, float(item["value"][1])))
        except (KeyError, IndexError, TypeError, ValueError) as e:
            raise QueryError(f"not an instant vector: {e}", query=query, kind="malformed") from None
        samples.reverse()
        return samples


def _bounded_hook(limit: int) -> Callable[..., None]:
    def hook(response: requests.Response, *args: Any, **kwargs: Any) -> None:
        if response._content_consumed:  # type: ignore[attr-defined]  # read already (a test's fake session)
            return _check_response(response)
        body = _read_bounded(response, limit)
        if response.status_code != 200:
            response._content, response._content_consumed = body, True  # type: ignore[attr-defined]
            return _check_response(response)
        with _DECODE:  # one answer decoded at a time: the transient peak is one answer's, not four
            try:
                doc = json.loads(body)
            except ValueError as e:
                raise QueryError(
                    f"malformed answer from Prometheus: {e}",
                    query=_query_of(response),
                    retryable=True,
                    kind="malformed",
                ) from None
            del body
            data = doc.get("data") if isinstance(doc, dict) else None
            result = data.get("result") if isinstance(data, dict) else None  # label values: data is a list
            if isinstance(result, list):  # an instant vector: decoded to samples as the parse is released
                doc["data"]["result"] = _Samples.decode(result, query=_query_of(response))
        response._content, response._content_consumed = b"", True  # type: ignore[attr-defined]
        response.__dict__["json"] = lambda **kw: doc  # prometheus-api-client reads the decoded document
        if isinstance(doc, dict):
            for warning in doc.get("warnings") or []:
                _log().warning("prometheus warning", warning=warning, query=_query_of(response))
        return None

    return hook


def _check_response(response: requests.Response, *args: Any, **kwargs: Any) -> None:
    """Non-200 → QueryError with Prometheus's error text; warnings → log."""
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
        max_answer_bytes: int = DEFAULT_MAX_ANSWER_BYTES,
    ) -> None:
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
        self._session.hooks["response"].append(_bounded_hook(max_answer_bytes))
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
        answers = dict(self.query_each(queries, at=at))
        return {name: answers[name] for name in queries}

    def query_each(self, queries: Mapping[K, str], *, at: float) -> Iterator[tuple[K, list[Sample] | QueryError]]:
        """Send every query at once (before this returns), then yield each answer (or its QueryError) as
        it arrives, fastest first."""
        futures = {self._pool.submit(self.query, text, at=at): name for name, text in queries.items()}

        def answers() -> Iterator[tuple[K, list[Sample] | QueryError]]:
            for future in as_completed(futures):
                try:
                    yield futures[future], future.result()
                except QueryError as e:
                    yield futures[future], e

        return answers()

    def query(self, promql: str, *, at: float) -> list[Sample]:
        """Evaluate `promql` at unix time `at`; a list of (labels, value) for an instant vector."""
        from exporter.retry import call

        return call(
            lambda: self._query_once(promql, at), what=f"GET {display_url(self.url)}/api/v1/query", policy=self.retry
        )

    def label_values(self, label: str, *, match: str, start: float, end: float) -> list[str]:
        """Values of `label` on the series matching the selector `match` between `start` and `end`
        (GET /api/v1/label/<label>/values: the index only, no samples read)."""
        from exporter.retry import call

        params = {"match[]": match, "start": f"{start:.3f}", "end": f"{end:.3f}"}

        def once() -> list[str]:
            values = self._mapped(match, lambda: self._conn.get_label_values(label, params=params))
            if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
                shape = json.dumps(values)[:200]
                raise QueryError(f"not a list of label values: {shape}", query=match, kind="malformed")
            return values

        return call(once, what=f"GET {display_url(self.url)}/api/v1/label/{label}/values", policy=self.retry)

    def _query_once(self, promql: str, at: float) -> list[Sample]:
        params = {"time": f"{at:.3f}", "timeout": timeout_param(self.timeout)}
        _log().debug("promql", url=display_url(self.url), query=promql, at=at)
        result = self._mapped(promql, lambda: self._conn.custom_query(promql, params=params))
        if isinstance(result, _Samples):
            return result
        try:
            return [(dict(item["metric"]), float(item["value"][1])) for item in result]
        except (KeyError, IndexError, TypeError, ValueError) as e:
            raise QueryError(
                f"not an instant vector: {json.dumps(result)[:200]}", query=promql, kind="malformed"
            ) from e

    def _mapped(self, promql: str, request: Callable[[], Any]) -> Any:
        """One request to the API with every failure mapped to a QueryError naming `promql`."""
        import requests
        import urllib3
        from prometheus_api_client.exceptions import PrometheusApiClientException

        self.requests_made += 1
        try:
            return request()
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
        except (requests.exceptions.InvalidURL, requests.exceptions.InvalidHeader, UnicodeError) as e:
            # Our own request cannot be built (ValueErrors too, but no answer was ever read): not retried,
            # and the library's text is left out since it may quote a header value.
            raise QueryError(
                f"the request to Prometheus cannot be sent ({type(e).__name__}): check EXPORTER_PROMETHEUS_URL "
                "and EXPORTER_PROMETHEUS_HEADERS",
                query=promql,
                kind="invalid_request",
            ) from None
        except (ValueError, KeyError, TypeError) as e:  # JSON that is not a Prometheus answer
            raise QueryError(
                f"malformed answer from Prometheus: {e}", query=promql, retryable=True, kind="malformed"
            ) from e
        except requests.exceptions.ChunkedEncodingError as e:
            raise QueryError(
                "malformed answer from Prometheus: body cut short", query=promql, retryable=True, kind="malformed"
            ) from e
        except (PrometheusApiClientException, requests.RequestException) as e:
            raise QueryError(f"Prometheus query failed: {e}", query=promql) from e


def _root(exc: BaseException) -> str:
    while exc.__cause__ is not None or exc.__context__ is not None:
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return type(exc).__name__


class Vector(dict[tuple[str, ...], float]):
    """Finite values by group key; `non_finite` holds the keys whose sample was NaN or ±Inf, so that a
    ratio with such a numerator is left out rather than read as 0 (see figures.figures_from)."""

    non_finite: frozenset[tuple[str, ...]] = frozenset()


def _fast_vector(samples: Sequence[Sample], labels: tuple[str, ...]) -> Vector | None:
    """The common case in C-level passes: every series carries every label, no key twice, every value
    finite (a finite sum proves it: NaN and ±Inf propagate, an overflow only sends us to the slow path).
    None when any of that does not hold."""
    if not samples or not labels:
        return None
    metrics, values = zip(*samples, strict=True)
    try:
        keys = list(map(operator.itemgetter(*labels), metrics))
    except KeyError:
        return None
    if len(labels) == 1:
        keys = [(key,) for key in keys]
    out = Vector(zip(keys, values, strict=True))
    return out if len(out) == len(keys) and math.isfinite(sum(values)) else None


def vector_by(
    samples: Sequence[Sample], labels: Sequence[str], *, query: str, set_aside_non_finite: bool = False
) -> Vector:
    """Key each sample by the values of `labels`. A NaN or ±Inf sample is never a value: by default it
    makes the answer a QueryError (kind `non_finite`: a ratio or verdict built on it would be wrong);
    with `set_aside_non_finite` its key goes to `Vector.non_finite` instead, for callers that leave out
    just the figures that need it (figures.measure)."""
    fast = _fast_vector(samples, tuple(labels))
    if fast is not None:
        return fast
    out = Vector()
    bad: set[tuple[str, ...]] = set()
    for metric, value in samples:
        key = tuple(metric.get(label, "") for label in labels)
        if key in out or key in bad:
            raise QueryError(
                f"duplicate series for {dict(zip(labels, key, strict=True))}", query=query, kind="duplicate_series"
            )
        if math.isfinite(value):
            out[key] = value
        else:
            bad.add(key)
    if bad and not set_aside_non_finite:
        raise QueryError(f"{len(bad)} series with a NaN or infinite value", query=query, kind="non_finite")
    if bad:
        out.non_finite = frozenset(bad)
        _log().warning("non-finite samples left out", series=len(bad), query=query[:200])
    return out
