"""`exporter rules`: the recorded expressions are the raw figure queries' own, the names carry the window,
the checked-in PrometheusRule is what the command prints at default settings, and promtool accepts it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from exporter.model import CATALOGUE
from exporter.query import promql

ROOT = Path(__file__).resolve().parents[2]
COMPONENT = ROOT / "deploy" / "components" / "recording-rules"


def exporter(*args: str, **env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("EXPORTER_", "DD_"))}
    proc = subprocess.run(
        [sys.executable, "-m", "exporter", *args], env=clean | env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_recorded_expressions_are_the_raw_queries_per_service() -> None:
    raw = promql.figure_queries(window="5m")
    rules = promql.recording_rules(window="5m")
    assert list(rules.values())[:3] == [raw["requests"], raw["ok"], raw["mtls"]]
    buckets = rules["destination_service_le:istio_request_duration_milliseconds_bucket:rate5m"]
    assert raw["p99"] == f"histogram_quantile(0.99, {buckets})"
    assert 'reporter="destination"' in buckets and "le)" in buckets


def test_the_window_is_part_of_every_recorded_name() -> None:
    names = list(promql.recording_rules(window="1h30m"))
    assert names == [
        "destination_service:istio_requests:rate1h30m",
        "destination_service:istio_requests_non_5xx:rate1h30m",
        "destination_service:istio_requests_mutual_tls:rate1h30m",
        "destination_service_le:istio_request_duration_milliseconds_bucket:rate1h30m",
    ]
    with pytest.raises(ValueError, match="duration"):
        promql.recorded_name("requests", window="5 minutes")


def test_recorded_figure_queries_read_only_the_recorded_series() -> None:
    q = promql.recorded_figure_queries(
        window="5m", matchers=[promql.one_of("destination_service_namespace", ["shop", "pay.ments"])]
    )
    ns = 'destination_service_namespace=~"pay\\\\.ments|shop"'
    assert q["requests"] == (
        "sum by (destination_service_namespace, destination_service_name) "
        f"(destination_service:istio_requests:rate5m{{{ns}}})"
    )
    assert q["p99"].startswith(
        "histogram_quantile(0.99, sum by (destination_service_namespace, destination_service_name, le) ("
    )
    assert all("istio_requests_total" not in text and "reporter" not in text for text in q.values())
    assert promql.recorded_figure_queries(window="5m")["ok"].endswith(
        "(destination_service:istio_requests_non_5xx:rate5m)"
    )
    with pytest.raises(ValueError, match="recorded series carry only"):
        promql.recorded_figure_queries(("destination_workload",), window="5m")


def test_the_recording_rules_follow_the_figure_catalogue() -> None:
    without_p99 = {name: info for name, info in CATALOGUE.items() if name != "p99_latency_ms"}
    rules = promql.recording_rules(window="5m", catalogue=without_p99)
    assert list(rules) == list(promql.recording_rules(window="5m"))[:3]
    recorded = promql.recorded_figure_queries(window="5m", catalogue=without_p99)
    assert list(recorded) == ["requests", "ok", "mtls"]
    only_p99 = {"p99_latency_ms": CATALOGUE["p99_latency_ms"]}
    group = promql.rule_group(window="5m", catalogue=only_p99)
    assert [r["record"] for r in group["rules"]] == [  # type: ignore[attr-defined]
        "destination_service:istio_requests:rate5m",
        "destination_service_le:istio_request_duration_milliseconds_bucket:rate5m",
    ]


def test_the_checked_in_prometheus_rule_is_what_the_command_prints() -> None:
    checked_in = (COMPONENT / "prometheusrule.yaml").read_text(encoding="utf-8")
    assert checked_in == exporter("rules", "--format", "prometheus-rule")
    doc = yaml.safe_load(checked_in)
    assert doc["kind"] == "PrometheusRule" and doc["spec"]["groups"][0]["interval"] == "30s"
    assert yaml.safe_load((COMPONENT / "kustomization.yaml").read_text())["resources"] == ["prometheusrule.yaml"]


@pytest.mark.tools  # promtool
def test_the_rule_file_follows_the_settings_and_promtool_accepts_it(tmp_path: Path) -> None:
    text = exporter("rules", EXPORTER_RATE_WINDOW="2m", EXPORTER_INTERVAL_SECONDS="15")
    group = yaml.safe_load(text)["groups"][0]
    assert group["name"] == "mesh-exporter-2m" and group["interval"] == "15s"
    assert [r["record"] for r in group["rules"]] == list(promql.recording_rules(window="2m"))
    assert [r["expr"] for r in group["rules"]] == list(promql.recording_rules(window="2m").values())
    (tmp_path / "rules.yml").write_text(text)
    proc = subprocess.run(["promtool", "check", "rules", str(tmp_path / "rules.yml")], capture_output=True, text=True)
    assert proc.returncode == 0 and "SUCCESS: 4 rules found" in proc.stdout, proc.stdout + proc.stderr
