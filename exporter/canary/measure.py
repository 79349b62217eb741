"""Canary and stable measured through the query layer, judged by the pure analysis, as one JSON document.

Canary and stable are measured over the same window from `reporter="destination"` series, split by
the version label (`destination_version` by default) inside one scope: a service
(destination_service_namespace/name) or, for Flagger, named workloads of a namespace
(destination_workload_namespace and destination_workload), so no other traffic mixes in. Request,
5xx and histogram bucket counts are read exactly (`promql.count_sum`: last value in the window minus
the last value before it), never as rate × window, which VictoriaMetrics inflates for a series born
in the window. A version with no requests is looked up in the label index, so that a version
Prometheus has no series of ("never seen": a typo, or no traffic yet) is told apart from one that
served 0 requests in the window.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from exporter.canary.analysis import Subset, Thresholds, Verdict, analyze
from exporter.errors import QueryError
from exporter.model import ServiceRef
from exporter.query import promql
from exporter.query.prometheus import PrometheusClient, vector_by

DEFAULT_VERSION_LABEL = "destination_version"
SEEN_LOOKBACK_S = 30 * 86400.0
"""How far back the label index is searched for a version without requests."""


@dataclass(frozen=True)
class Scope:
    """The traffic analysed: label matchers besides the version label (the first names the namespace)."""

    matchers: tuple[promql.Matcher, ...]

    @classmethod
    def service(cls, ref: ServiceRef) -> Scope:
        return cls(
            (
                promql.Matcher("destination_service_namespace", ref.namespace),
                promql.Matcher("destination_service_name", ref.name),
            )
        )

    @classmethod
    def workloads(cls, namespace: str, workloads: Sequence[str]) -> Scope:
        """Workloads of a namespace by name (Flagger: canary `<name>`, primary `<name>-primary`)."""
        return cls(
            (
                promql.Matcher("destination_workload_namespace", namespace),
                promql.one_of("destination_workload", workloads),
            )
        )

    @property
    def namespace(self) -> str:
        return self.matchers[0].value

    def describe(self) -> list[str]:
        return [str(m) for m in self.matchers]


def _scope(target: ServiceRef | Scope) -> Scope:
    return target if isinstance(target, Scope) else Scope.service(target)


def measure_subsets(
    client: PrometheusClient,
    service: ServiceRef | Scope,
    versions: Sequence[str],
    *,
    at: float,
    window: str,
    label: str = DEFAULT_VERSION_LABEL,
) -> dict[str, Subset]:
    """Requests, 5xx, p99 and cumulative bucket counts of each version in `window` before `at`.

    A version without traffic gets Subset(0, 0). A failed query raises its QueryError: a figure that
    could not be read is never turned into a zero.
    """
    matchers = (*_scope(service).matchers, promql.one_of(label, versions))
    five_xx = (*matchers, promql.Matcher("response_code", "5..", "=~"))
    buckets = promql.count_sum((label, "le"), window=window, matchers=matchers, metric=promql.DURATION_BUCKET)
    queries = {
        "requests": promql.count_sum((label,), window=window, matchers=matchers),
        "errors": promql.count_sum((label,), window=window, matchers=five_xx),
        "buckets": buckets,
        "p99": promql.histogram_quantile(0.99, buckets),
    }
    by = {"requests": (label,), "errors": (label,), "buckets": (label, "le"), "p99": (label,)}
    vectors = {}
    for name, answer in client.query_all(queries, at=at).items():
        if isinstance(answer, QueryError):
            raise answer
        # a version without requests in the window has a NaN p99 (no data, not an error); counts must be finite
        vectors[name] = vector_by(answer, by[name], query=queries[name], set_aside_non_finite=name == "p99")
    out: dict[str, Subset] = {}
    for version in versions:
        requests = round(vectors["requests"].get((version,), 0.0))
        if requests <= 0:
            out[version] = Subset(0, 0)
            continue
        counts = sorted((float(le), count) for (v, le), count in vectors["buckets"].items() if v == version)
        p99 = vectors["p99"].get((version,))
        out[version] = Subset(
            requests=requests,
            errors=round(vectors["errors"].get((version,), 0.0)),
            p99_ms=p99 if p99 is not None and math.isfinite(p99) else None,
            buckets=tuple(counts),
        )
    return out


def never_seen(
    client: PrometheusClient, service: ServiceRef | Scope, versions: Sequence[str], *, at: float, label: str
) -> tuple[str, ...]:
    """The `versions` that no istio_requests_total series of the scope has carried in the 30 days before `at`."""
    if not versions:
        return ()
    match = promql.selector(promql.REQUESTS, promql.destination(*_scope(service).matchers))
    seen = set(client.label_values(label, match=match, start=at - SEEN_LOOKBACK_S, end=at))
    return tuple(v for v in versions if v not in seen)


@dataclass(frozen=True)
class Analysis:
    """A verdict with what it was computed over; `to_dict()` is the JSON of the CLI and the endpoints."""

    verdict: Verdict
    scope: Scope
    service: str
    canary: str
    stable: str
    label: str
    at: float
    window: str
    unseen: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        doc = self.verdict.to_dict()
        return {
            "namespace": self.scope.namespace,
            "service": self.service,
            "scope": self.scope.describe(),
            "version_label": self.label,
            "evaluated_at": self.at,
            "window": self.window,
            **doc,
            "canary": {"version": self.canary, "seen": self.canary not in self.unseen, **doc["canary"]},
            "stable": {"version": self.stable, "seen": self.stable not in self.unseen, **doc["stable"]},
        }


def analyse(
    client: PrometheusClient,
    service: ServiceRef | Scope,
    *,
    name: str | None = None,
    canary: str,
    stable: str,
    at: float,
    window: str,
    label: str = DEFAULT_VERSION_LABEL,
    thresholds: Thresholds | None = None,
) -> Analysis:
    """Measure both subsets, judge them, and say which version has never been seen (the one function behind
    `canary analyze`, the analysis endpoint and the Flagger webhooks). QueryError when Prometheus fails."""
    scope = _scope(service)
    subsets = measure_subsets(client, scope, (canary, stable), at=at, window=window, label=label)
    verdict = analyze(subsets[canary], subsets[stable], thresholds)
    quiet = [v for v in (canary, stable) if subsets[v].requests == 0]
    unseen = never_seen(client, scope, quiet, at=at, label=label)
    if unseen:
        where = ", ".join(scope.describe())
        notes = tuple(
            f'{label}="{v}" has no series at all for {where} in the 30 days before the instant '
            "(a typo, or no request yet), which is not the same as 0 requests in the window"
            for v in unseen
        )
        verdict = replace(verdict, reasons=notes + verdict.reasons)
    title = name if name is not None else service.name if isinstance(service, ServiceRef) else ""
    return Analysis(verdict, scope, title, canary, stable, label, at, window, unseen)


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
    """The verdict alone (the rollout's step check): measured and judged as `analyse` does."""
    subsets = measure_subsets(client, service, (canary, stable), at=at, window=window, label=label)
    return analyze(subsets[canary], subsets[stable], thresholds)
