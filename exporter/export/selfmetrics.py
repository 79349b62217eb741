"""The daemon's own metrics, in a private registry (never the global one), and the leadership status collector.

Conventions of Prometheus exporters: one application prefix (`mesh_exporter_`), a `*_build_info` gauge,
`mesh_exporter_upstream_up{upstream}` meaning "the last call to that upstream succeeded", the process
and platform collectors registered on the private registry, and no `*_created` series.
"""

from __future__ import annotations

import platform
from collections.abc import Callable, Iterator

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, PlatformCollector, ProcessCollector
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from exporter import __version__

STATUSES = ("leader", "follower", "unknown")

prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]  # `*_created` series are noise for an exporter's counters


class SelfMetrics:
    """The exporter's own metrics, in a private registry (never the global one)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        ProcessCollector(registry=r)  # process_cpu_seconds_total, process_resident_memory_bytes, ...
        PlatformCollector(registry=r)  # python_info
        self.build_info = Gauge(
            "mesh_exporter_build_info",
            "Always 1; the labels say which build runs.",
            ["version", "python_version"],
            registry=r,
        )
        self.build_info.labels(__version__, platform.python_version()).set(1)
        self.upstream_up = Gauge(
            "mesh_exporter_upstream_up",
            "1 when the last call to this upstream succeeded, 0 when it failed (absent before the first call).",
            ["upstream"],
            registry=r,
        )
        self.cycle_seconds = Histogram(
            "mesh_exporter_cycle_duration_seconds",
            "Duration of export cycles.",
            registry=r,
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
        )
        self.stage_seconds = Gauge(
            "mesh_exporter_stage_duration_seconds", "Duration of each stage in the last cycle.", ["stage"], registry=r
        )
        self.services = Gauge("mesh_exporter_services_discovered", "Services matching the label selector.", registry=r)
        self.discovery_age = Gauge(
            "mesh_exporter_discovery_age_seconds", "Age of the Service list in use (last good discovery).", registry=r
        )
        self.points = Counter("mesh_exporter_points_submitted", "Points accepted by Datadog.", registry=r)
        self.points_failed = Counter(
            "mesh_exporter_points_failed", "Points Datadog did not accept in a cycle (kept in the backlog).", registry=r
        )
        self.points_dropped = Counter(
            "mesh_exporter_points_dropped", "Unsent points given up, by reason.", ["reason"], registry=r
        )
        self.backlog = Gauge("mesh_exporter_backlog_points", "Points waiting to be re-sent to Datadog.", registry=r)
        self.errors = Counter("mesh_exporter_errors", "Errors by stage.", ["stage"], registry=r)
        self.query_errors = Counter(
            "mesh_exporter_query_errors", "Failed PromQL queries by kind.", ["kind"], registry=r
        )
        self.promql_requests = Counter("mesh_exporter_promql_requests", "PromQL requests made.", registry=r)
        self.datadog_requests = Counter("mesh_exporter_datadog_requests", "Datadog series requests made.", registry=r)
        self.last_success = Gauge(
            "mesh_exporter_last_success_timestamp_seconds", "When the last fully successful cycle ended.", registry=r
        )
        self.backlog_oldest_age = Gauge(
            "mesh_exporter_backlog_oldest_point_age_seconds",
            "Age of the oldest point waiting to be re-sent (0 when the backlog is empty).",
            registry=r,
        )
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
    """`mesh_exporter_leadership{status}`: 1 for this replica's current status, 0 for the others (read at scrape)."""

    def __init__(self, status: Callable[[], str]) -> None:
        self.status = status

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "mesh_exporter_leadership",
            "Leader election: 1 for this replica's status (leader, follower, unknown), 0 for the others.",
            labels=["status"],
        )
        current = self.status()
        for status in STATUSES:
            family.add_metric([status], 1.0 if status == current else 0.0)
        yield family


def register_leadership(registry: CollectorRegistry, status: Callable[[], str]) -> None:
    registry.register(LeadershipCollector(status))
