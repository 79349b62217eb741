"""Datadog sink: figures → gauge points → size-bounded batches → v2 series API, retried.

Points of a cycle go in as few requests as Datadog's payload limits allow (5 MiB decompressed,
512,000 bytes deflated): batches are cut on their exact JSON size, a batch whose deflated body is still
over the limit (full-precision values compress less) is halved before it is sent, and a batch
the API still refuses as too large (413) is split in two and retried, within a request budget per
submission (a 413 that never clears cannot turn into thousands of requests); a single point still
refused as too large is set aside (`SubmitStats.rejected`), never retried forever. Any exception from
the transport keeps the points (they are returned as failed). Retries (408, 429, 5xx,
connection errors) wait what Datadog's X-RateLimit-Reset asks. Other 4xx are final and logged with
the API's error text. The HTTP client is datadog-api-client, behind the small `SeriesTransport`
protocol so that tests and benchmarks can count what is sent.
"""

from __future__ import annotations

import functools
import json
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol, TypeVar

import structlog
import urllib3
from datadog_api_client import ApiClient, Configuration
from datadog_api_client.exceptions import ApiException
from datadog_api_client.v1.api.events_api import EventsApi
from datadog_api_client.v2.model.metric_content_encoding import MetricContentEncoding

from exporter.errors import SubmitError, retryable_status
from exporter.model import DEFAULT_METRIC_PREFIX, UST_KEYS, ServiceRef, metric_names
from exporter.retry import RetryPolicy, call

log = structlog.get_logger("exporter.sink.datadog")
K = TypeVar("K")
T = TypeVar("T")

GAUGE = 3  # MetricIntakeType.GAUGE in the v2 series API
MAX_DECOMPRESSED_BYTES = 5_242_880
MAX_COMPRESSED_BYTES = 512_000  # the v2 series API's limit on the body as sent
MAX_BATCH_BYTES = 5_000_000  # margin under the decompressed limit
_ENVELOPE = len('{"series":[]}')


class Point(NamedTuple):
    """One gauge point (a tuple: 40,000 of them are built every cycle at 10,000 services)."""

    metric: str
    value: float
    timestamp: int
    tags: tuple[str, ...]

    def encoded(self) -> str:
        """This point as one series of the v2 API, JSON: exactly what is sent (values are finite)."""
        return (
            f'{{"metric":{_json_text(self.metric)},"type":{GAUGE},"points":[{{"timestamp":{int(self.timestamp)},'
            f'"value":{float(self.value)!r}}}],"tags":{_json_tags(self.tags)}}}'
        )


@functools.lru_cache(maxsize=1024)
def _json_text(text: str) -> str:
    return json.dumps(text)


@functools.lru_cache(maxsize=1 << 17)  # one entry per Service's tag set, encoded once
def _json_tags(tags: tuple[str, ...]) -> str:
    return json.dumps(list(tags), separators=(",", ":"))


def _key(tag: str) -> str | None:
    return tag.partition(":")[0] if ":" in tag else None


def _merge(*layers: Iterable[str]) -> tuple[str, ...]:
    """The tags of every layer, lowest precedence first: a key a higher layer sets replaces that key's
    tags from the layers below; tags without a key, and several values of a key in one layer, all stay."""
    out: list[str] = []
    for layer in layers:
        tags = list(dict.fromkeys(layer))
        keys = {_key(t) for t in tags} - {None}
        out = [t for t in out if _key(t) not in keys and t not in tags] + tags
    return tuple(out)


class TagSettings(Protocol):
    """The settings global_tags() reads (exporter.config.Settings has them)."""

    @property
    def dd_tags(self) -> Sequence[str]: ...
    @property
    def tags(self) -> Sequence[str]: ...
    @property
    def dd_env(self) -> str | None: ...
    @property
    def dd_cluster_name(self) -> str | None: ...


def global_tags(settings: TagSettings) -> tuple[str, ...]:
    """The tags of every point and event, lowest precedence first: DD_TAGS, EXPORTER_TAGS, then
    DD_ENV (`env`) and DD_CLUSTER_NAME (`kube_cluster_name`). Pass them to tags_for() as `extra`."""
    agent = [f"env:{settings.dd_env}"] if settings.dd_env else []
    agent += [f"kube_cluster_name:{settings.dd_cluster_name}"] if settings.dd_cluster_name else []
    return _merge(settings.dd_tags, settings.tags, agent)


def tags_for(
    *,
    namespace: str | None = None,
    service: str | None = None,
    labels: Iterable[tuple[str, str]] = (),
    extra: Sequence[str] = (),
) -> tuple[str, ...]:
    """The one tag builder: every tag a point or event carries for a service, a namespace or the mesh.

    Precedence, lowest first: `extra` (global_tags(): DD_TAGS, EXPORTER_TAGS, DD_ENV, DD_CLUSTER_NAME),
    the Service's Unified Service Tagging labels (`env`, `service`, `version`; `service:<name>` when no
    label names the application), then the identity tags `kube_service` and `kube_namespace`.
    """
    ust = {key: value.lower() for key, value in labels if key in UST_KEYS and value}
    if service and "service" not in ust:
        ust["service"] = service
    identity = ([f"kube_service:{service}"] if service else []) + ([f"kube_namespace:{namespace}"] if namespace else [])
    return _merge(extra, [f"{key}:{ust[key]}" for key in UST_KEYS if key in ust], identity)


def service_tags(service: ServiceRef, extra: tuple[str, ...]) -> tuple[str, ...]:
    """tags_for() of a discovered Service, with global_tags() as `extra`."""
    # keyed by the labels too: a ServiceRef's equality ignores them, and a new `version` label must show
    return _cached_tags(service.namespace, service.name, service.labels, extra)


@functools.lru_cache(maxsize=1 << 17)  # a Service's tags are the same every cycle: built once, not 4× a cycle
def _cached_tags(
    namespace: str, name: str, labels: tuple[tuple[str, str], ...], extra: tuple[str, ...]
) -> tuple[str, ...]:
    return tags_for(namespace=namespace, service=name, labels=labels, extra=extra)


def points_for(
    values: Mapping[str, Mapping[K, float]],
    tags_of: Mapping[K, tuple[str, ...]],
    *,
    at: int,
    prefix: str = DEFAULT_METRIC_PREFIX,
) -> list[Point]:
    """One gauge point per figure (by `Figures` field name) and group it has a value for, tagged with the
    group's tags (service_tags()); a group without tags is not one of ours and gets none. A figure without
    data sends nothing, never a 0."""
    names = metric_names(prefix)
    return [
        Point(names[figure], value, at, tags_of[key])
        for figure, by_key in values.items()
        for key, value in by_key.items()
        if key in tags_of
    ]


@dataclass
class Batch:
    """Consecutive points and their JSON series, sent as one request."""

    points: list[Point] = field(default_factory=list)
    encoded: list[str] = field(default_factory=list)
    size: int = _ENVELOPE

    def payload(self) -> bytes:
        return ('{"series":[' + ",".join(self.encoded) + "]}").encode()

    def halves(self) -> tuple[Batch, Batch]:
        half = len(self.points) // 2
        first, second = self.encoded[:half], self.encoded[half:]
        return (
            Batch(self.points[:half], first, _ENVELOPE + sum(len(x) + 1 for x in first)),
            Batch(self.points[half:], second, _ENVELOPE + sum(len(x) + 1 for x in second)),
        )


def batches(points: Sequence[Point], *, max_bytes: int = MAX_BATCH_BYTES) -> list[Batch]:
    """Consecutive runs of points whose JSON payload stays under `max_bytes` (each point encoded once)."""
    out: list[Batch] = []
    current = Batch()
    for point in points:
        encoded = point.encoded()
        if current.points and current.size + len(encoded) + 1 > max_bytes:
            out.append(current)
            current = Batch()
        current.points.append(point)
        current.encoded.append(encoded)
        current.size += len(encoded) + 1
    if current.points:
        out.append(current)
    return out


class SeriesTransport(Protocol):
    def send_series(self, payload: bytes) -> None:
        """POST one deflated JSON document `{"series": [...]}` to the v2 series API."""
        ...

    def send_event(self, event: dict[str, Any]) -> None: ...


def api_call(what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """`fn(*args, **kwargs)` of datadog-api-client, its failures as SubmitError (status, whether a retry can
    help, X-RateLimit-Reset as `retry_after`); one attempt: retries are exporter.retry's."""
    try:
        return fn(*args, **kwargs)
    except ApiException as e:
        status = int(e.status or 0)
        error = SubmitError(f"{what} -> {status}: {_error_text(e)}", status=status, retryable=retryable_status(status))
        error.retry_after = _reset_seconds(e.headers)
        raise error from None
    except urllib3.exceptions.HTTPError as e:
        raise SubmitError(f"{what} -> no answer: {type(e).__name__}", retryable=True) from None


def _error_text(e: ApiException) -> str:
    body = e.body
    if isinstance(body, dict) and body.get("errors"):
        return "; ".join(str(x) for x in body["errors"])
    return str(body or e.reason or "")[:300]


def _reset_seconds(headers: Mapping[str, str] | None) -> float:
    for name, value in (headers or {}).items():
        if name.lower() == "x-ratelimit-reset":
            try:
                return max(0.0, float(value))
            except ValueError:
                return 0.0
    return 0.0


class DatadogAPI:
    """SeriesTransport over datadog-api-client (v2 series, v1 events), deflate-compressed."""

    def __init__(self, base_url: str, *, api_key: str, app_key: str | None = None, timeout: float = 15.0) -> None:
        config = Configuration(host=base_url, check_input_type=False, request_timeout=timeout)  # type: ignore[no-untyped-call]
        config.api_key["apiKeyAuth"] = api_key
        if app_key:
            config.api_key["appKeyAuth"] = app_key
        config.retry_policy = urllib3.util.Retry(total=0, raise_on_status=False)  # retries are ours
        self.base_url = base_url
        self._api_key = api_key
        self._timeout = timeout
        self._client = ApiClient(config)
        self._events = EventsApi(self._client)  # type: ignore[no-untyped-call]

    def close(self) -> None:
        self._client.close()

    def send_series(self, payload: bytes) -> None:
        # Through the client's own connection pool (its TLS, proxy and timeout settings), with the body the
        # sink encoded: the REST layer would json.dumps a dict again, and MetricsApi.submit_metrics would
        # first walk every value through the generic model serializer (~1 s of CPU for 40,000 points).
        url = self._client.configuration.host + "/api/v2/series"
        headers = {
            **self._client.default_headers,
            "Accept": "application/json",
            "Content-Type": "application/json",
            "Content-Encoding": MetricContentEncoding.DEFLATE.value,
            "DD-API-KEY": self._api_key,
        }

        def post() -> None:
            response = self._client.rest_client.pool_manager.request(
                "POST", url, body=payload, headers=headers, timeout=urllib3.Timeout(total=self._timeout)
            )
            if not 200 <= response.status <= 299:
                raise ApiException(http_resp=response)  # type: ignore[no-untyped-call]

        api_call(f"POST {self.base_url}/api/v2/series", post)

    def send_event(self, event: dict[str, Any]) -> None:
        api_call(f"POST {self.base_url}/api/v1/events", self._events.create_event, body=event)


def deflated(payload: bytes) -> bytes:
    """`payload` deflated at the fastest level, or at the default one when that alone fits Datadog's limit
    (the fastest takes a third of the CPU; full-precision values compress less than names and tags)."""
    fast = zlib.compress(payload, 1)
    return fast if len(fast) <= MAX_COMPRESSED_BYTES else zlib.compress(payload, 6)


@dataclass
class SubmitStats:
    requests: int = 0
    points: int = 0
    bytes: int = 0  # JSON sent (before compression)
    failed: list[Point] = field(default_factory=list)  # not accepted: for the backlog
    errors: list[SubmitError] = field(default_factory=list)
    rejected: list[Point] = field(default_factory=list)  # a single point refused as too large: set aside
    budget: int = 0  # requests this submission may still make

    @property
    def failed_points(self) -> int:
        return len(self.failed)


class DatadogSink:
    """Submits points in as few requests as the payload limits allow; never drops silently."""

    def __init__(
        self,
        transport: SeriesTransport,
        *,
        retry: RetryPolicy | None = None,
        max_bytes: int = MAX_BATCH_BYTES,
        split_budget: int = 16,
    ) -> None:
        self.transport = transport
        self.retry = retry or RetryPolicy(attempts=4, base_wait=1.0, max_wait=30.0)
        self.max_bytes = max_bytes
        self.split_budget = split_budget
        """Extra requests a submission may spend splitting batches refused with 413 (beyond retries)."""

    def submit(self, points: Sequence[Point]) -> SubmitStats:
        """Send every point; what could not be sent after retries is returned in `failed` with its error.

        After a batch fails for a reason a retry could have cured (Datadog down or throttling), the
        remaining batches are not tried this time: they join the failed points at once, so an outage
        costs one batch's retries per cycle, not one per batch.
        """
        pending = batches(points, max_bytes=self.max_bytes)
        stats = SubmitStats(budget=len(pending) * self.retry.attempts + self.split_budget)
        for index, batch in enumerate(pending):
            error = self._send(batch, stats)
            if error is None:
                continue
            stats.errors.append(error)
            skipped = [p for rest in pending[index + 1 :] for p in rest.points] if error.retryable else []
            stats.failed += skipped
            log.error(
                "datadog submission failed",
                points=len(batch.points),
                not_tried=len(skipped),
                error=str(error),
                status=error.status,
            )
            if error.retryable:
                break
        return stats

    def _send(self, batch: Batch, stats: SubmitStats) -> SubmitError | None:
        """Send one batch (halving it on 413); failed points go to stats.failed; returns the error."""
        if stats.requests >= stats.budget:
            stats.failed += batch.points
            return SubmitError("request budget of this submission spent; the rest waits", retryable=True)
        payload = deflated(batch.payload())
        if len(payload) > MAX_COMPRESSED_BYTES and len(batch.points) > 1:  # halved before any request
            return self._halved(batch, stats)

        def attempt() -> None:
            stats.requests += 1
            try:
                self.transport.send_series(payload)
            except SubmitError:
                raise
            except Exception as e:  # whatever the transport raises, the points are kept
                raise SubmitError(f"POST /api/v2/series -> {type(e).__name__}: {e}", retryable=True) from None

        try:
            call(attempt, what="POST /api/v2/series", policy=self.retry)
        except SubmitError as e:
            if e.status == 413 and len(batch.points) == 1:
                stats.rejected += batch.points  # one point too large can never be sent: set aside, counted
                log.error("a single point is refused as too large; set aside", metric=batch.points[0].metric)
                return e
            if e.status == 413:  # too large after all: halve and send each half
                log.warning("payload too large; splitting batch", points=len(batch.points))
                return self._halved(batch, stats)
            stats.failed += batch.points
            return e
        stats.points += len(batch.points)
        stats.bytes += batch.size
        return None

    def _halved(self, batch: Batch, stats: SubmitStats) -> SubmitError | None:
        """Send each half of `batch`; the second waits when the first failed for a reason a retry could cure."""
        first_half, second_half = batch.halves()
        first = self._send(first_half, stats)
        if first is not None and first.retryable:
            stats.failed += second_half.points
            return first
        return self._send(second_half, stats) or first

    def event(
        self, *, title: str, text: str, tags: Sequence[str], alert_type: str = "info", date_happened: int | None = None
    ) -> None:
        body: dict[str, Any] = {
            "title": title[:500],
            "text": text[:4000],
            "tags": list(tags),
            "alert_type": alert_type,
        }
        if date_happened is not None:
            body["date_happened"] = date_happened
        call(lambda: self.transport.send_event(body), what="POST /api/v1/events", policy=self.retry)
