"""Canary and stable measured through the query layer, judged by the pure analysis, as one JSON document.

Canary and stable are measured over the same window from `reporter="destination"` series, split by
the version label (`destination_version` by default) and narrowed to one service by
destination_service_namespace/name, so their traffic never mixes. Request and 5xx counts are rates ×
window seconds (`increase` = `rate` × seconds in PromQL); the histogram's bucket counts by `le` feed
the rank test.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from exporter.canary.analysis import Subset, Thresholds, Verdict, analyze
from exporter.model import ServiceRef
from exporter.query import figures, promql
from exporter.query.prometheus import PrometheusClient, vector_by

DEFAULT_VERSION_LABEL = "destination_version"


def measure_subsets(
    client: PrometheusClient,
    service: ServiceRef,
    versions: Sequence[str],
    *,
    at: float,
    window: str,
    label: str = DEFAULT_VERSION_LABEL,
) -> dict[str, Subset]:
    """Requests, 5xx, p99 and cumulative buckets of each version of `service` in `window` before `at`.

    A version without traffic gets Subset(0, 0). A failed query raises its QueryError: a figure that
    could not be read is never turned into a zero.
    """
    matchers = (
        promql.Matcher("destination_service_namespace", service.namespace),
        promql.Matcher("destination_service_name", service.name),
        promql.one_of(label, versions),
    )
    measured = figures.measure(client, at=at, window=window, by=(label,), matchers=matchers)
    for error in measured.errors.values():
        raise error
    query = promql.rate_sum((label, "le"), window=window, matchers=matchers, metric=promql.DURATION_BUCKET)
    rates = vector_by(client.query(query, at=at), (label, "le"), query=query)
    seconds = promql.duration_seconds(window)
    out: dict[str, Subset] = {}
    for version in versions:
        f = measured.figures.get((version,))
        if f is None or f.request_rate is None or f.success_rate_pct is None:
            out[version] = Subset(0, 0)
            continue
        total = f.request_rate * seconds
        buckets = sorted((float(le), rate * seconds) for (v, le), rate in rates.items() if v == version)
        out[version] = Subset(
            requests=round(total),
            errors=round(total * (100.0 - f.success_rate_pct) / 100.0),
            p99_ms=f.p99_latency_ms,
            buckets=tuple(buckets),
        )
    return out


def run_analysis(
    client: PrometheusClient,
    service: ServiceRef,
    *,
    canary: str,
    stable: str,
    at: float,
    window: str,
    label: str = DEFAULT_VERSION_LABEL,
    thresholds: Thresholds | None = None,
) -> Verdict:
    subsets = measure_subsets(client, service, (canary, stable), at=at, window=window, label=label)
    return analyze(subsets[canary], subsets[stable], thresholds)


# ----------------------------------------------------------------------------------------------- flags


# ------------------------------------------------------------------------------------------- rendering


def report_dict(
    verdict: Verdict, service: ServiceRef, *, canary: str, stable: str, label: str, at: float, window: str
) -> dict[str, Any]:
    doc = verdict.to_dict()
    doc["canary"] = {"version": canary, **doc["canary"]}
    doc["stable"] = {"version": stable, **doc["stable"]}
    return {
        "namespace": service.namespace,
        "service": service.name,
        "version_label": label,
        "evaluated_at": at,
        "window": window,
        **doc,
    }


# ------------------------------------------------------------------------------------------- commands
