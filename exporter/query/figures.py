"""The query layer's façade: figures per group (service, version, caller…) at one instant.

A measurement runs the four grouped queries of `promql.figure_queries` concurrently and takes the
ratios here, so that a group with traffic always gets every figure it has data for (0 % is a
figure) and a group without traffic gets none. A failed query costs only the figures that need it.
A sample that is not finite (NaN, ±Inf) never makes a figure: a group whose numerator or p99 is not
finite gets no such figure (never 0 % or 100 %), and is counted in `Measurement.non_finite`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from exporter.errors import QueryError
from exporter.model import Figures, ServiceRef
from exporter.query import promql
from exporter.query.prometheus import Vector as Decoded
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
    non_finite: dict[str, int] = field(default_factory=dict)
    """Figures left out because a sample they need was NaN or ±Inf, by query name."""
    source: Literal["raw", "recorded"] = "raw"
    """Whether the figures came from raw Istio series or from the recorded series of `exporter rules`."""


def _bad(vector: Vector | None, key: Key) -> bool:
    return isinstance(vector, Decoded) and key in vector.non_finite


def _pct(part: Vector | None, key: Key, total: float) -> float | None:
    if part is None or _bad(part, key):
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


def non_finite_figures(vectors: Mapping[str, Vector | None]) -> dict[str, int]:
    """How many figures of groups with traffic `figures_from` left out for a non-finite sample, by query."""
    totals = vectors.get("requests")
    counts: dict[str, int] = {}
    if isinstance(totals, Decoded) and totals.non_finite:
        counts["requests"] = len(totals.non_finite)
    for key, total in (totals or {}).items():
        if total > 0:
            for name in ("ok", "mtls", "p99"):
                if _bad(vectors.get(name), key):
                    counts[name] = counts.get(name, 0) + 1
    return counts


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
    vectors, errors = _run(client, queries, at=at, by=by)
    return Measurement(figures_from(vectors), errors, non_finite_figures(vectors))


def _run(
    client: PrometheusClient, queries: Mapping[str, str], *, at: float, by: Sequence[str]
) -> tuple[dict[str, Vector | None], dict[str, QueryError]]:
    vectors: dict[str, Vector | None] = {}
    errors: dict[str, QueryError] = {}
    for name, answer in client.query_all(queries, at=at).items():
        try:
            if isinstance(answer, QueryError):
                raise answer
            vectors[name] = vector_by(answer, by, query=queries[name], set_aside_non_finite=True)
        except QueryError as e:
            vectors[name] = None
            errors[name] = e
    return vectors, errors


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
    vectors, errors = _run(client, queries, at=at, by=by)
    if source == "auto":
        absent = "requests" not in errors and not vectors.get("requests")
        _auto_chose(window, "raw" if absent else "recorded")
        if absent:
            return measure(client, at=at, window=window, matchers=matchers)
    return Measurement(figures_from(vectors), errors, non_finite_figures(vectors), source="recorded")


def service_figures(
    client: PrometheusClient,
    services: Iterable[ServiceRef],
    *,
    at: float,
    window: str,
    namespaces: Sequence[str] | None = None,
    source: Source = "raw",
) -> tuple[dict[ServiceRef, Figures], Measurement]:
    """Figures for each of `services` (Figures() with all None when it had no traffic), and the
    measurement they came from (its errors and non-finite counts)."""
    matchers = [promql.one_of("destination_service_namespace", namespaces)] if namespaces else []
    m = measure_services(client, at=at, window=window, matchers=matchers, source=source)
    return {s: m.figures.get((s.namespace, s.name), Figures()) for s in services}, m
