"""`exporter datadog setup`: definitions the real datadog-api-client accepts, checked field by field, printed
by --dry-run (also from the package as installed), and created then updated (never duplicated) against the
intake stand-in's real Datadog REST paths, which refuses metadata for metrics it has not received."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
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
from exporter.errors import SubmitError
from exporter.model import METRICS
from exporter.retry import RetryPolicy
from exporter.sink import datadog_setup
from exporter.sink.datadog_setup import PENDING, api_client, apply, load_definitions
from sandbox.intake import FakeIntake, Reply

ROOT = Path(__file__).parents[2]
DEFINITIONS = ROOT / "deploy" / "datadog"  # the repository's view of the package's datadog_definitions/
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


def receive(intake: FakeIntake, *metrics: str) -> None:
    """Points for `metrics`, so that Datadog (the stand-in) knows them."""
    series = [{"metric": m, "type": 3, "points": [{"timestamp": 1, "value": 1.0}], "tags": []} for m in metrics]
    headers = {"DD-API-KEY": API_KEY}
    answer = requests.post(f"{intake.url}/api/v2/series", json={"series": series}, headers=headers, timeout=5)
    assert answer.status_code == 202


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
    # every monitor alerts per cluster: per service for the figures, per cluster for the missing data
    groups = {m.name: m.query.partition(" by ")[2].partition("}")[0] + "}" for m in monitors}
    assert groups.pop("[mesh-exporter] no data from the exporter") == "{kube_cluster_name}"
    assert set(groups.values()) == {"{kube_cluster_name,kube_namespace,kube_service}"}


def test_the_prefix_moves_every_metric(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXPORTER_METRIC_PREFIX", "mesh")
    doc = dry_run(capsys)
    assert set(doc["metadata"]) == {"mesh.request_rate", "mesh.success_rate_pct", "mesh.mtls_coverage_pct",
                                    "mesh.p99_latency_ms", "mesh.report.mtls_coverage_pct",
                                    "mesh.report.plaintext_request_rate"}  # fmt: skip
    assert "istio.service." not in json.dumps(doc) and "mesh.p99_latency_ms" in json.dumps(doc["monitors"])


def test_a_field_datadog_would_reject_is_a_config_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    shutil.copytree(DEFINITIONS, tmp_path / "defs")
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
    receive(intake, *METRICS.values(), REPORT_METRIC, PLAINTEXT_METRIC)
    assert main(["datadog", "setup"]) == 0
    first = capsys.readouterr().out
    dashboards, monitors = intake.dashboards(), intake.monitors()
    assert len(dashboards) == 1 and len(monitors) == 1 + 4
    assert set(intake.metadata()) == {*METRICS.values(), REPORT_METRIC, PLAINTEXT_METRIC}
    assert intake.metadata()[METRICS["p99_latency_ms"]]["unit"] == "millisecond"
    assert first.count(" created ") == 5 and " updated " not in first

    # a second run, with a changed threshold: the same objects are updated in place
    shutil.copytree(DEFINITIONS, tmp_path / "defs")
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


def test_the_definitions_ship_with_the_package(tmp_path: Path) -> None:
    # what setuptools puts in the wheel (build_py: the packages and their package data), imported from a
    # directory outside the repository, with the repository nowhere on the path
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / "exporter", tmp_path / "exporter", ignore=shutil.ignore_patterns("__pycache__"))
    build = [sys.executable, "-c", "import setuptools; setuptools.setup()", "-q", "build_py", "-d", "lib"]
    subprocess.run(build, cwd=tmp_path, check=True, capture_output=True, timeout=120)
    run = tmp_path / "run"
    run.mkdir()
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(tmp_path / "lib"), "HOME": str(run)}
    proc = subprocess.run(
        [sys.executable, "-m", "exporter", "datadog", "setup", "--dry-run"],
        cwd=run, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["dashboard"]["title"] == "Istio services (mesh-exporter)" and len(doc["monitors"]) == 4
    # deploy/datadog is the package's directory itself, not a copy that could drift
    assert DEFINITIONS.resolve() == (ROOT / "exporter" / "sink" / "datadog_definitions").resolve()


def _set(*keys: str | int, value: Any) -> Callable[[Any], None]:
    def change(doc: Any) -> None:
        for key in keys[:-1]:
            doc = doc[key]
        doc[keys[-1]] = value

    return change


W = ("widgets", 0, "definition")


@pytest.mark.parametrize(
    ("name", "change", "path", "problem"),
    [
        ("dashboard.json", _set(*W, "titel", value="x"), "dashboard.json.widgets[0].definition.titel",
         "not a field of a Datadog TimeseriesWidgetDefinition"),
        ("dashboard.json", _set("template_variabels", value=[]), "dashboard.json.template_variabels",
         "not a field of a Datadog Dashboard"),
        ("dashboard.json", _set(*W, "requests", 0, "display", value="line"),
         "dashboard.json.widgets[0].definition.requests[0].display",
         "not a field of a Datadog TimeseriesWidgetRequest"),
        ("dashboard.json", _set(*W, "requests", 0, "display_type", value="lines"),
         "dashboard.json.widgets[0].definition.requests[0].display_type", "'lines' is not one of ['area', 'bars',"),
        ("dashboard.json", _set(*W, "type", value="timeserie"), "dashboard.json.widgets[0].definition.type",
         "'timeserie' is not a Datadog WidgetDefinition type (one of alert_graph,"),
        ("dashboard.json", _set(*W, "show_legend", value="yes"), "dashboard.json.widgets[0].definition",
         "not a valid TimeseriesWidgetDefinition: Invalid type for variable 'show_legend'"),
        ("monitors.json", _set(0, "options", "notify_nodata", value=True), "monitors.json[0].options.notify_nodata",
         "not a field of a Datadog MonitorOptions"),
        ("monitors.json", _set(0, "options", "thresholds", "critcal", value=1),
         "monitors.json[0].options.thresholds.critcal", "not a field of a Datadog MonitorThresholds"),
        ("monitors.json", _set(0, "type", value="query alrt"), "monitors.json[0].type", "'query alrt' is not one of"),
    ],
)  # fmt: skip
def test_a_misspelt_key_or_a_bad_value_is_a_config_error_naming_its_path(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, name: str, change: Callable[[Any], None], path: str,
    problem: str,
) -> None:  # fmt: skip
    shutil.copytree(DEFINITIONS, tmp_path / "defs")
    file = tmp_path / "defs" / name
    doc = json.loads(file.read_text())
    change(doc)
    file.write_text(json.dumps(doc))
    assert main(["datadog", "setup", "--dry-run", "--from", str(tmp_path / "defs")]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith(f"exporter: config error: {path}: {problem}"), captured.err
    assert captured.err.count("\n") == 1 and captured.out == ""


def test_notify_handles_close_every_monitor_message(capsys: pytest.CaptureFixture[str]) -> None:
    doc = dry_run(capsys, "--notify", "@slack-mesh", "--notify", "@pagerduty-mesh")
    assert [m["message"].rpartition("\n\n")[2] for m in doc["monitors"]] == ["@slack-mesh @pagerduty-mesh"] * 4
    plain = dry_run(capsys)
    assert all("@slack" not in m["message"] for m in plain["monitors"])
    assert main(["datadog", "setup", "--dry-run", "--notify", "slack-mesh"]) == 2
    assert "not a Datadog notification handle" in capsys.readouterr().err


def test_metadata_of_metrics_not_received_yet_is_pending_and_a_rerun_declares_it(
    intake: FakeIntake, capsys: pytest.CaptureFixture[str]
) -> None:
    receive(intake, *METRICS.values())  # the daemon has sent its figures; the weekly report has not run yet
    assert main(["datadog", "setup"]) == 0
    captured = capsys.readouterr()
    rows = [line.split() for line in captured.out.splitlines()]
    pending = sorted(row[1] for row in rows if " ".join(row[2:]) == PENDING)
    assert pending == sorted([PLAINTEXT_METRIC, REPORT_METRIC])
    assert set(intake.metadata()) == set(METRICS.values())
    assert "metadata of 2 metric(s) pending" in captured.err and captured.err.count("\n") == 1
    # the dashboard and the monitors were still created
    assert len(intake.dashboards()) == 1 and len(intake.monitors()) == 4
    receive(intake, REPORT_METRIC, PLAINTEXT_METRIC)
    assert main(["datadog", "setup"]) == 0
    captured = capsys.readouterr()
    assert PENDING not in captured.out and captured.err == ""
    assert set(intake.metadata()) == {*METRICS.values(), REPORT_METRIC, PLAINTEXT_METRIC}
    assert len(intake.dashboards()) == 1 and len(intake.monitors()) == 4


def _post_dashboard(intake: FakeIntake, title: str, description: str = "") -> None:
    body = {"title": title, "description": description, "layout_type": "ordered", "widgets": []}
    headers = {"DD-API-KEY": API_KEY, "DD-APPLICATION-KEY": APP_KEY}
    assert requests.post(f"{intake.url}/api/v1/dashboard", json=body, headers=headers, timeout=5).ok


def test_the_dashboard_is_found_past_the_first_page(intake: FakeIntake, capsys: pytest.CaptureFixture[str]) -> None:
    for i in range(150):
        _post_dashboard(intake, f"someone's dashboard {i}")
    assert main(["datadog", "setup"]) == 0
    ours = set(intake.dashboards()) - {d for d, v in intake.dashboards().items() if v["title"].startswith("someone")}
    _post_dashboard(intake, "Istio services (mesh-exporter)")  # a copy without the marker is not ours
    capsys.readouterr()
    before = len(intake.requests)
    assert main(["datadog", "setup"]) == 0
    assert f"updated {next(iter(ours))}" in capsys.readouterr().out
    assert len(intake.dashboards()) == 152  # no duplicate: ours (the 151st) was found on the second page
    pages = [r.query for r in intake.requests[before:] if (r.method, r.path) == ("GET", "/api/v1/dashboard")]
    assert pages == [{"filter[shared]": "false", "count": "100", "start": "0"},
                     {"filter[shared]": "false", "count": "100", "start": "100"}]  # fmt: skip


def _client(intake: FakeIntake) -> Any:
    return api_client(intake.url, api_key=API_KEY, app_key=APP_KEY)


def test_the_dashboard_listing_is_bounded(intake: FakeIntake, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(datadog_setup, "DASHBOARD_PAGES", 2)
    for i in range(4):
        _post_dashboard(intake, f"someone's dashboard {i}")
    with _client(intake) as client, pytest.raises(SubmitError, match="more than 4 dashboards"):
        apply(load_definitions(), client, page=2)
    assert len(intake.dashboards()) == 4  # rather no dashboard than a second one


def test_calls_retry_through_the_project_policy_and_creates_are_tried_once(intake: FakeIntake) -> None:
    waits: list[float] = []
    policy = RetryPolicy(attempts=3, base_wait=0.25, sleep=waits.append)
    receive(intake, *METRICS.values(), REPORT_METRIC, PLAINTEXT_METRIC)
    intake.script(Reply.rate_limited(reset=2), Reply(503))  # the first metadata PUT, twice
    with _client(intake) as client:
        rows = apply(load_definitions(), client, retry=policy)
    assert waits == [2.0, 0.5]  # X-RateLimit-Reset honoured, then the policy's own backoff
    puts = [r.status for r in intake.requests if r.method == "PUT"]
    assert puts[:3] == [429, 503, 200]  # urllib3 did not retry underneath: each attempt is one request
    assert sum(1 for _, _, action in rows if action == "declared") == 6
    # a create that fails is not repeated (it may have landed); the error stops the run
    intake.set_fault(lambda r: Reply(503) if (r.method, r.path) == ("POST", "/api/v1/monitor") else None)
    intake_monitors = len(intake.monitors())
    with _client(intake) as client:
        definitions = load_definitions()
        for monitor, _ in definitions.monitors:
            monitor.name += " (new)"
        with pytest.raises(SubmitError, match="POST /api/v1/monitor -> 503"):
            apply(definitions, client, retry=policy)
    assert [r.method for r in intake.requests if r.path == "/api/v1/monitor"][-1:] == ["POST"]
    assert sum(1 for r in intake.requests if (r.method, r.path) == ("POST", "/api/v1/monitor")) == 4 + 1
    assert len(intake.monitors()) == intake_monitors
