"""Value types shared by every part of the exporter: service identity, figures, the metric catalogue."""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass(frozen=True, order=True)
class ServiceRef:
    """A Kubernetes Service; `(namespace, name)` is its identity everywhere."""

    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class Figures:
    """The four figures of one service at one instant; None means no data (or the query failed)."""

    request_rate: float | None = None
    success_rate_pct: float | None = None
    mtls_coverage_pct: float | None = None
    p99_latency_ms: float | None = None

    def values(self) -> dict[str, float | None]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


# Figure name -> Datadog metric (gauge). One mapping, used by the sink, the docs test and the catalogue test.
METRICS: dict[str, str] = {
    "request_rate": "istio.service.request_rate",
    "success_rate_pct": "istio.service.success_rate_pct",
    "mtls_coverage_pct": "istio.service.mtls_coverage_pct",
    "p99_latency_ms": "istio.service.p99_latency_ms",
}
