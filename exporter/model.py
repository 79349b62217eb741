"""Value types shared by every part of the exporter: service identity, figures, the metric catalogue."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

UST_LABEL_PREFIX = "tags.datadoghq.com/"
UST_KEYS = ("env", "service", "version")  # Unified Service Tagging: labels tags.datadoghq.com/<key>


@dataclass(frozen=True, order=True)
class ServiceRef:
    """A Kubernetes Service; `(namespace, name)` is its identity everywhere.

    `labels` holds its Unified Service Tagging labels as (key, value) pairs, key one of UST_KEYS; they
    describe the Service but are no part of its identity (equality, order and hash ignore them).
    """

    namespace: str
    name: str
    labels: tuple[tuple[str, str], ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_hash", hash((self.namespace, self.name)))

    def __hash__(self) -> int:  # computed once: a cycle looks up every Service several times
        return self._hash  # type: ignore[attr-defined, no-any-return]

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class Figures:
    """The figures of one service at one instant, one field per CATALOGUE entry (same order); None means
    no data (or the query failed)."""

    request_rate: float | None = None
    success_rate_pct: float | None = None
    mtls_coverage_pct: float | None = None
    p99_latency_ms: float | None = None

    def values(self) -> dict[str, float | None]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


DEFAULT_METRIC_PREFIX = "istio.service"


@dataclass(frozen=True)
class MetricInfo:
    """A Datadog metric the exporter sends: its name under the prefix and the metadata Datadog shows."""

    suffix: str
    unit: str  # a Datadog unit name
    description: str
    per_unit: str | None = None
    type: str = "gauge"

    def name(self, prefix: str = DEFAULT_METRIC_PREFIX) -> str:
        return f"{prefix}.{self.suffix}"


@dataclass(frozen=True, kw_only=True)
class FigureInfo(MetricInfo):
    """A figure: its Datadog metric, the figure query it reads (`promql.FIGURE_QUERIES`: `requests` is the
    rate itself, a rate of some requests is their share in %, a quantile is read as is), its `once` column."""

    query: str
    column: str
    decimals: int


# Figure name -> how it is measured, sent and shown: THE list of figures, in `Figures`' field order. The
# queries, recording rules, figure assembly, points, `once` table and JSON all follow it.
CATALOGUE: dict[str, FigureInfo] = {
    "request_rate": FigureInfo(
        "request_rate",
        "request",
        "Requests per second to the Service (Istio, destination side).",
        per_unit="second",
        query="requests",
        column="REQ/S",
        decimals=2,
    ),
    "success_rate_pct": FigureInfo(
        "success_rate_pct",
        "percent",
        "Share of requests to the Service answered without a 5xx.",
        query="ok",
        column="SUCCESS %",
        decimals=2,
    ),
    "mtls_coverage_pct": FigureInfo(
        "mtls_coverage_pct",
        "percent",
        "Share of requests to the Service that used Istio mutual TLS.",
        query="mtls",
        column="MTLS %",
        decimals=1,
    ),
    "p99_latency_ms": FigureInfo(
        "p99_latency_ms",
        "millisecond",
        "99th percentile of the Service's request duration.",
        query="p99",
        column="P99 MS",
        decimals=1,
    ),
}
# The weekly mTLS report's gauges (mesh-wide, and per namespace with traffic), under the same prefix.
REPORT_CATALOGUE: dict[str, MetricInfo] = {
    "mtls_coverage_pct": MetricInfo(
        "report.mtls_coverage_pct",
        "percent",
        "mTLS coverage over the report window: the mesh, or a namespace (kube_namespace).",
    ),
    "plaintext_request_rate": MetricInfo(
        "report.plaintext_request_rate",
        "request",
        "Plaintext requests per second over the report window (destination side): the figure to alert on.",
        per_unit="second",
    ),
}


def metric_names(prefix: str = DEFAULT_METRIC_PREFIX) -> dict[str, str]:
    """Figure name -> Datadog metric name under `prefix`."""
    return {figure: info.name(prefix) for figure, info in CATALOGUE.items()}


METRICS: dict[str, str] = metric_names()
"""The default names (`istio.service.*`), which dashboards built on earlier versions chart."""
