"""The query layer's façade: figures per group (service, version, caller…) at one instant.

A measurement runs the four grouped queries of `promql.figure_queries` concurrently and takes the
ratios here, so that a group with traffic always gets every figure it has data for (0 % is a
figure) and a group without traffic gets none. A failed query costs only the figures that need it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from exporter.errors import QueryError
from exporter.model import Figures, ServiceRef
from exporter.query import promql
from exporter.query.prometheus import vector_by

if TYPE_CHECKING:
    from exporter.query.prometheus import PrometheusClient

Key = tuple[str, ...]
Vector = Mapping[Key, float]
Source = Literal["raw", "recorded", "auto"]
SOURCES: tuple[Source, ...] = ("raw", "recorded", "auto")


@dataclass(frozen=True)
class Measurement:
    """Figures per group key, and the queries that failed (by name: requests, ok, mtls, p99)."""

    figures: dict[Key, Figures]
    errors: dict[str, QueryError] = field(default_factory=dict)
    source: Literal["raw", "recorded"] = "raw"
    """Whether the figures came from raw Istio series or from the recorded series of `exporter rules`."""


def _pct(part: Vector | None, key: Key, total: float) -> float | None:
    if part is None:
        return None
    return min(100.0, 100.0 * part.get(key, 0.0) / total)  # no numerator series: 0 %, not nothing


def figures_from(vectors: Mapping[str, Vector | None]) -> dict[Key, Figures]:
    """Combine the four vectors (None where its query failed) into figures per group with traffic."""
    totals, p99 = vectors.get("requests"), vectors.get("p99")
    if totals is None:  # traffic unknown: only a finite p99 proves there was some
        return {key: Figures(p99_latency_ms=value) for key, value in (p99 or {}).items()}
    out: dict[Key, Figures] = {}
    for key, total in totals.items():
        if total <= 0:  # series exist but no request in the window: no figures, never NaN or 0
            continue
        out[key] = Figures(
            request_rate=total,
            success_rate_pct=_pct(vectors.get("ok"), key, total),
            mtls_coverage_pct=_pct(vectors.get("mtls"), key, total),
            p99_latency_ms=None if p99 is None else p99.get(key),
        )
    return out


def measure(
    client: PrometheusClient,
    *,
    at: float,
    window: str,
    by: Sequence[str] = promql.SERVICE_LABELS,
    matchers: Sequence[promql.Matcher] = (),
    offset: str | None = None,
    q: float = 0.99,
) -> Measurement:
    """Figures for every group of `by` labels with destination-reported traffic in `window` before `at`."""
    queries = promql.figure_queries(by, window=window, matchers=matchers, offset=offset, q=q)
    figures, errors, _ = _run(client, queries, at=at, by=by)
    return Measurement(figures, errors)


def _run(
    client: PrometheusClient, queries: Mapping[str, str], *, at: float, by: Sequence[str]
) -> tuple[dict[Key, Figures], dict[str, QueryError], dict[str, Vector | None]]:
    vectors: dict[str, Vector | None] = {}
    errors: dict[str, QueryError] = {}
    for name, answer in client.query_all(queries, at=at).items():
        try:
            if isinstance(answer, QueryError):
                raise answer
            vectors[name] = vector_by(answer, by, query=queries[name])
        except QueryError as e:
            vectors[name] = None
            errors[name] = e
    return figures_from(vectors), errors, vectors


_auto_lock = threading.Lock()
_auto_last: dict[str, str] = {}  # window → the source `auto` chose last, so each switch is logged once


def _auto_chose(window: str, chosen: str) -> None:
    with _auto_lock:
        previous = _auto_last.get(window)
        _auto_last[window] = chosen
    if previous != chosen:
        import structlog

        structlog.get_logger("exporter.query.figures").info(
            "figure source",
            source=chosen,
            previous=previous,
            window=window,
            recorded_series=promql.recorded_name("requests", window=window),
        )


def measure_services(
    client: PrometheusClient,
    *,
    at: float,
    window: str,
    matchers: Sequence[promql.Matcher] = (),
    source: Source = "raw",
) -> Measurement:
    """Figures per (namespace, service), from raw Istio series or from the recorded series.

    `auto` reads the recorded series and falls back to the raw queries, for every service at once,
    when the recorded request-rate series are absent (rules not installed, or not evaluated yet); a
    failed recorded query is an error like any other, not a reason to double the load on Prometheus.
    """
    by = promql.SERVICE_LABELS
    if source == "raw":
        return measure(client, at=at, window=window, matchers=matchers)
    queries = promql.recorded_figure_queries(by, window=window, matchers=matchers)
    figures, errors, vectors = _run(client, queries, at=at, by=by)
    if source == "auto":
        absent = "requests" not in errors and not vectors.get("requests")
        _auto_chose(window, "raw" if absent else "recorded")
        if absent:
            return measure(client, at=at, window=window, matchers=matchers)
    return Measurement(figures, errors, source="recorded")


def service_figures(
    client: PrometheusClient,
    services: Iterable[ServiceRef],
    *,
    at: float,
    window: str,
    namespaces: Sequence[str] | None = None,
    source: Source = "raw",
) -> tuple[dict[ServiceRef, Figures], dict[str, QueryError]]:
    """Figures for each of `services` (Figures() with all None when it had no traffic)."""
    matchers = [promql.one_of("destination_service_namespace", namespaces)] if namespaces else []
    m = measure_services(client, at=at, window=window, matchers=matchers, source=source)
    return {s: m.figures.get((s.namespace, s.name), Figures()) for s in services}, m.errors
