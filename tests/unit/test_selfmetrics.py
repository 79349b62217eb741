"""Self-metrics follow the exporter conventions: one prefix, build info, upstream up-gauges, the process and
platform collectors on the private registry, `_total` counters and no `*_created` series."""

from __future__ import annotations

import platform

from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from exporter import __version__
from exporter.export.selfmetrics import SelfMetrics, register_leadership


def exposition(metrics: SelfMetrics) -> dict[str, list[tuple[str, dict[str, str], float]]]:
    text = generate_latest(metrics.registry).decode()
    families = {}
    for family in text_string_to_metric_families(text):
        families[family.name] = [(s.name, s.labels, s.value) for s in family.samples]
    return families


def test_one_prefix_and_the_standard_collectors() -> None:
    metrics = SelfMetrics()
    register_leadership(metrics.registry, lambda: "follower")
    metrics.points.inc(3)
    families = exposition(metrics)
    ours = [n for n in families if not n.startswith(("process_", "python_"))]
    assert ours and all(n.startswith("mesh_exporter_") for n in ours), ours
    # the process and platform collectors live on the private registry
    assert "process_resident_memory_bytes" in families and "process_cpu_seconds" in families
    assert families["python_info"][0][1]["version"] == platform.python_version()
    # and nothing is registered on the global registry by the exporter
    assert not [n for n in (f.name for f in REGISTRY.collect()) if n.startswith("mesh_exporter_")]


def test_no_created_series_and_counters_end_in_total() -> None:
    metrics = SelfMetrics()
    metrics.points.inc(2)
    metrics.errors.labels("query").inc()
    text = generate_latest(metrics.registry).decode()
    assert "_created" not in text
    assert "mesh_exporter_points_submitted_total 2.0" in text
    assert 'mesh_exporter_errors_total{stage="query"} 1.0' in text


def test_build_info_and_upstream_up() -> None:
    metrics = SelfMetrics()
    families = exposition(metrics)
    (sample,) = families["mesh_exporter_build_info"]
    assert sample[1] == {"version": __version__, "python_version": platform.python_version()} and sample[2] == 1
    # before any call there is no up series (absent, not a fake 0 or 1)
    assert families["mesh_exporter_upstream_up"] == []
    metrics.upstream_up.labels("prometheus").set(0)
    metrics.upstream_up.labels("datadog").set(1)
    ups = {s[1]["upstream"]: s[2] for s in exposition(metrics)["mesh_exporter_upstream_up"]}
    assert ups == {"prometheus": 0, "datadog": 1}
