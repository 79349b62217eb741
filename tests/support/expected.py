"""Figures a mesh *should* show, computed from the generator's parameters and PromQL's documented
semantics, independently of the exporter's code (no import from exporter.query.figures/promql)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from sandbox.meshsim import ISTIO_BUCKETS_MS, Service


@dataclass(frozen=True)
class Expected:
    request_rate: float
    success_rate_pct: float
    mtls_coverage_pct: float
    p99_latency_ms: float


def histogram_quantile(q: float, cumulative: list[tuple[float, float]]) -> float:
    """Prometheus's histogram_quantile over (upper bound, cumulative count) pairs ending with +Inf."""
    total = cumulative[-1][1]
    if total <= 0:
        return math.nan
    rank = q * total
    index = next(i for i, (_, count) in enumerate(cumulative) if count >= rank or i == len(cumulative) - 1)
    if index == len(cumulative) - 1:  # in the +Inf bucket: the highest finite bound
        return cumulative[-2][0]
    upper, count = cumulative[index]
    lower, below = (0.0, 0.0) if index == 0 else cumulative[index - 1]
    return lower + (upper - lower) * (rank - below) / (count - below)


def expected(service: Service, q: float = 0.99) -> Expected | None:
    """What the exporter must report for `service` in a window lying wholly in its phase."""
    total = sum(c.rps for c in service.callers)
    if total == 0:
        return None
    ok = sum(c.rps * v.share * (1 - v.error_rate) for c in service.callers for v in service.versions)
    mtls = sum(c.rps * c.mtls_share for c in service.callers)
    bounds = [*ISTIO_BUCKETS_MS, math.inf]
    cumulative = []
    for le in bounds:
        below = sum(
            c.rps * v.share * sum(f for bucket, f in v.latency.shares if bucket <= le)
            for c in service.callers
            for v in service.versions
        )
        cumulative.append((le, below))
    return Expected(total, 100 * ok / total, 100 * mtls / total, histogram_quantile(q, cumulative))
