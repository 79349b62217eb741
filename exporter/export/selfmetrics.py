"""The daemon's own metrics, in a private registry (never the global one), and the leadership status collector."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

STATUSES = ("leader", "follower", "unknown")


class SelfMetrics:
    """The exporter's own metrics, in a private registry (never the global one)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.cycle_seconds = Histogram(
            "exporter_cycle_duration_seconds",
            "Duration of export cycles.",
            registry=r,
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
        )
        self.stage_seconds = Gauge(
            "exporter_stage_duration_seconds", "Duration of each stage in the last cycle.", ["stage"], registry=r
        )
        self.services = Gauge("exporter_services_discovered", "Services matching the label selector.", registry=r)
        self.discovery_age = Gauge(
            "exporter_discovery_age_seconds", "Age of the Service list in use (last good discovery).", registry=r
        )
        self.points = Counter("exporter_points_submitted", "Points accepted by Datadog.", registry=r)
        self.points_failed = Counter(
            "exporter_points_failed", "Points Datadog did not accept in a cycle (kept in the backlog).", registry=r
        )
        self.points_dropped = Counter(
            "exporter_points_dropped", "Unsent points given up, by reason.", ["reason"], registry=r
        )
        self.backlog = Gauge("exporter_backlog_points", "Points waiting to be re-sent to Datadog.", registry=r)
        self.errors = Counter("exporter_errors", "Errors by stage.", ["stage"], registry=r)
        self.query_errors = Counter("exporter_query_errors", "Failed PromQL queries by kind.", ["kind"], registry=r)
        self.promql_requests = Counter("exporter_promql_requests", "PromQL requests made.", registry=r)
        self.datadog_requests = Counter("exporter_datadog_requests", "Datadog series requests made.", registry=r)
        self.last_success = Gauge(
            "exporter_last_success_timestamp_seconds", "When the last fully successful cycle ended.", registry=r
        )
        self.up = Gauge("exporter_up", "1 while the exporter runs.", registry=r)
        self.instants_missed = Counter(
            "mesh_exporter_instants_missed",
            "Evaluation instants of the grid not measured, by reason (never skipped silently).",
            ["reason"],
            registry=r,
        )
        self.non_finite = Counter(
            "mesh_exporter_non_finite_figures",
            "Figures left out because a sample they need was NaN or Inf, by query.",
            ["query"],
            registry=r,
        )
        self.spool_set_aside = Counter(
            "mesh_exporter_spool_entries_set_aside",
            "Spooled points that failed validation at start (set aside in a file beside the spool).",
            registry=r,
        )
        self.kube_malformed = Counter(
            "mesh_exporter_kube_malformed_answers",
            "Kubernetes API answers of the wrong shape (typed KubeError, the last good list kept).",
            registry=r,
        )
        for reason in ("older_than_datadog_accepts", "not_measured", "no_service_list"):
            self.instants_missed.labels(reason)
        for stage in ("discovery", "query", "submit", "cycle"):
            self.errors.labels(stage)
        for reason in ("older_than_datadog_accepts", "backlog_full", "shutdown", "too_large"):
            self.points_dropped.labels(reason)


class LeadershipCollector(Collector):
    """`exporter_leadership{status}`: 1 for this replica's current status, 0 for the others (read at scrape)."""

    def __init__(self, status: Callable[[], str]) -> None:
        self.status = status

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "exporter_leadership",
            "Leader election: 1 for this replica's status (leader, follower, unknown), 0 for the others.",
            labels=["status"],
        )
        current = self.status()
        for status in STATUSES:
            family.add_metric([status], 1.0 if status == current else 0.0)
        yield family


def register_leadership(registry: CollectorRegistry, status: Callable[[], str]) -> None:
    registry.register(LeadershipCollector(status))
