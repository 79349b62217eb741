"""`exporter datadog setup`: definitions the real datadog-api-client accepts, printed by --dry-run, and
created then updated (never duplicated) against the intake stand-in's real Datadog REST paths."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from datadog_api_client import Configuration
from datadog_api_client.model_utils import validate_and_convert_types
from datadog_api_client.v1.model.dashboard import Dashboard
from datadog_api_client.v1.model.metric_metadata import MetricMetadata
from datadog_api_client.v1.model.monitor import Monitor

from exporter.cli import main
from exporter.model import METRICS
from sandbox.intake import FakeIntake

ROOT = Path(__file__).parents[2]
API_KEY, APP_KEY = "dd-api-key-setup-0123456789", "dd-app-key-setup-0123456789"
REPORT_METRIC = "istio.service.report.mtls_coverage_pct"
PLAINTEXT_METRIC = "istio.service.report.plaintext_request_rate"
MANAGED_BY = "managed-by:mesh-exporter"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("EXPORTER_", "DD_")):
            monkeypatch.delenv(name)


@pytest.fixture
def intake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeIntake]:
    with FakeIntake(api_key=API_KEY, app_key=APP_KEY) as server:
        monkeypatch.setenv("EXPORTER_DATADOG_URL", server.url)
        monkeypatch.setenv("DD_API_KEY", API_KEY)
        monkeypatch.setenv("DD_APP_KEY", APP_KEY)
        yield server


def accepted(data: Any, cls: type) -> Any:
    model = validate_and_convert_types(data, (cls,), ["test"], True, True, Configuration())
    assert not model._unparsed, data
    return model


def dry_run(capsys: pytest.CaptureFixture[str], *extra: str) -> dict[str, Any]:
    assert main(["datadog", "setup", "--dry-run", *extra]) == 0
    return json.loads(capsys.readouterr().out)


def test_dry_run_prints_definitions_datadog_api_client_accepts(capsys: pytest.CaptureFixture[str]) -> None:
    doc = dry_run(capsys)
    # metadata for every metric sent, with a unit and a description
    assert set(doc["metadata"]) == {*METRICS.values(), REPORT_METRIC, PLAINTEXT_METRIC}
    units = {name: (m["unit"], m.get("per_unit")) for name, m in doc["metadata"].items()}
    assert units[METRICS["p99_latency_ms"]] == ("millisecond", None)
    assert units[METRICS["request_rate"]] == ("request", "second")
    assert units[METRICS["success_rate_pct"]][0] == units[REPORT_METRIC][0] == "percent"
    for metadata in doc["metadata"].values():
        assert accepted(metadata, MetricMetadata).type == "gauge" and metadata["description"]
    # the dashboard: the four figures, the report trend, template variables, the events overlay
    dashboard = accepted(doc["dashboard"], Dashboard)
    variables = {v.name: v.prefix for v in dashboard.template_variables}
    assert variables == {"namespace": "kube_namespace", "service": "kube_service", "env": "env",
                         "cluster": "kube_cluster_name"}  # fmt: skip
    text = json.dumps(doc["dashboard"])
    for metric in [*METRICS.values(), REPORT_METRIC, PLAINTEXT_METRIC]:
        assert metric in text, metric
    assert "tags:report:mtls-coverage" in text and "tags:source:mesh-exporter" in text
    assert MANAGED_BY in doc["dashboard"]["description"]
    # the monitors: p99, success rate, mTLS coverage, no data; each keyed by the tag and a unique name
    monitors = [accepted(m, Monitor) for m in doc["monitors"]]
    assert len({m.name for m in monitors}) == len(monitors) == 4
    assert all(MANAGED_BY in m.tags for m in monitors)
    queries = " ".join(m.query for m in monitors)
    for metric in ("p99_latency_ms", "success_rate_pct", "mtls_coverage_pct", "request_rate"):
        assert METRICS[metric] in queries
    assert [m.name for m in monitors if m.options.get("notify_no_data")] == [
        "[mesh-exporter] no data from the exporter"
    ]


def test_the_prefix_moves_every_metric(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXPORTER_METRIC_PREFIX", "mesh")
    doc = dry_run(capsys)
    assert set(doc["metadata"]) == {"mesh.request_rate", "mesh.success_rate_pct", "mesh.mtls_coverage_pct",
                                    "mesh.p99_latency_ms", "mesh.report.mtls_coverage_pct",
                                    "mesh.report.plaintext_request_rate"}  # fmt: skip
    assert "istio.service." not in json.dumps(doc) and "mesh.p99_latency_ms" in json.dumps(doc["monitors"])


def test_a_field_datadog_would_reject_is_a_config_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    shutil.copytree(ROOT / "deploy" / "datadog", tmp_path / "defs")
    path = tmp_path / "defs" / "dashboard.json"
    dashboard = json.loads(path.read_text())
    dashboard["layout_type"] = "sideways"
    path.write_text(json.dumps(dashboard))
    assert main(["datadog", "setup", "--dry-run", "--from", str(tmp_path / "defs")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("exporter: config error: dashboard.json.layout_type:") and err.count("\n") == 1


def test_create_then_update_never_duplicates(
    intake: FakeIntake, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # someone's own monitor with the same name but without the tag is never touched
    own = {"type": "query alert", "query": "avg(last_5m):avg:x{*} > 1",
           "name": "[mesh-exporter] p99 latency above 1 s", "tags": ["team:other"]}  # fmt: skip
    headers = {"DD-API-KEY": API_KEY, "DD-APPLICATION-KEY": APP_KEY}
    theirs = requests.post(f"{intake.url}/api/v1/monitor", json=own, headers=headers, timeout=5).json()["id"]
    assert main(["datadog", "setup"]) == 0
    first = capsys.readouterr().out
    dashboards, monitors = intake.dashboards(), intake.monitors()
    assert len(dashboards) == 1 and len(monitors) == 1 + 4
    assert set(intake.metadata()) == {*METRICS.values(), REPORT_METRIC, PLAINTEXT_METRIC}
    assert intake.metadata()[METRICS["p99_latency_ms"]]["unit"] == "millisecond"
    assert first.count(" created ") == 5 and " updated " not in first

    # a second run, with a changed threshold: the same objects are updated in place
    shutil.copytree(ROOT / "deploy" / "datadog", tmp_path / "defs")
    path = tmp_path / "defs" / "monitors.json"
    definitions = json.loads(path.read_text())
    definitions[0]["query"] = definitions[0]["query"].replace("> 1000", "> 750")
    definitions[0]["options"]["thresholds"]["critical"] = 750
    path.write_text(json.dumps(definitions))
    before = len(intake.requests)
    assert main(["datadog", "setup", "--from", str(tmp_path / "defs")]) == 0
    second = capsys.readouterr().out
    assert second.count(" updated ") == 5 and " created " not in second
    assert intake.dashboards().keys() == dashboards.keys() and intake.monitors().keys() == monitors.keys()
    changed = [m for m in intake.monitors().values() if m["name"] == definitions[0]["name"] and MANAGED_BY in m["tags"]]
    assert len(changed) == 1 and changed[0]["query"].endswith("> 750")
    assert changed[0]["options"]["thresholds"]["critical"] == 750
    assert intake.monitors()[theirs] == monitors[theirs]  # untouched
    methods = sorted({(r.method, r.path.split("/")[3]) for r in intake.requests[before:]})
    assert methods == [("GET", "dashboard"), ("GET", "monitor"), ("PUT", "dashboard"), ("PUT", "metrics"),
                       ("PUT", "monitor")]  # fmt: skip
    # the keys were sent as Datadog expects and never printed
    assert all(r.api_key_valid for r in intake.requests)
    assert APP_KEY not in first + second and API_KEY not in first + second


def test_setup_needs_the_application_key(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("DD_API_KEY", API_KEY)
    assert main(["datadog", "setup"]) == 2
    assert capsys.readouterr().err.startswith("exporter: config error: DD_APP_KEY:")
