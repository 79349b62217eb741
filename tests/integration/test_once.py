"""`exporter once` end to end: a real Prometheus over a generated mesh, the real kubernetes client
against a local API, the real datadog-api-client against a local intake. Expected figures come
from the generator's parameters (tests/support/expected.py) and from hand-written PromQL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from exporter.model import METRICS
from sandbox.intake import FakeIntake
from sandbox.kubeapi import FakeKubeAPI
from sandbox.meshsim import kube_service_manifests
from tests.support.expected import expected
from tests.support.procs import API_KEY, exporter_env, run_exporter
from tests.support.prom import DemoProm

GHOST = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "ghost", "namespace": "shop",
         "labels": {"migrated": "true"}}, "spec": {"ports": [{"port": 80}]}}  # fmt: skip


@pytest.fixture(scope="module")
def kube(demo_prom: DemoProm, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FakeKubeAPI, Path]]:
    with FakeKubeAPI(page_limit_cap=4) as api:
        for manifest in kube_service_manifests(demo_prom.services):
            api.add(manifest)
        api.add(GHOST)  # migrated, but Prometheus has never seen it
        yield api, api.write_kubeconfig(tmp_path_factory.mktemp("kube") / "kubeconfig")


@pytest.fixture
def intake() -> Iterator[FakeIntake]:
    with FakeIntake(api_key=API_KEY) as server:
        yield server


def direct(url: str, promql: str, at: float) -> float | None:
    """One hand-written PromQL expression evaluated by Prometheus itself; None for an empty result."""
    r = requests.get(f"{url}/api/v1/query", params={"query": promql, "time": at}, timeout=10)
    r.raise_for_status()
    result = r.json()["data"]["result"]
    assert len(result) <= 1, result
    return float(result[0]["value"][1]) if result else None


def test_once_json_submit_matches_the_generator_and_prometheus(
    demo_prom: DemoProm, kube: tuple[FakeKubeAPI, Path], intake: FakeIntake
) -> None:
    at = int(demo_prom.at)
    proc = run_exporter(
        exporter_env(demo_prom, kube[1], intake), "once", "--at", str(at), "--output", "json", "--submit"
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["evaluated_at"] == at and doc["errors"] == []
    rows = {(s["namespace"], s["service"]): s for s in doc["services"]}

    migrated = {(s.namespace, s.name): s for s in demo_prom.services if s.migrated}
    assert set(rows) == set(migrated) | {("shop", "ghost")}  # not-migrated analytics/reporting is absent
    fields = ("request_rate", "success_rate_pct", "mtls_coverage_pct", "p99_latency_ms")
    for key, service in migrated.items():
        want = expected(service)
        if want is None:  # analytics/warehouse-loader: series exist, no traffic in the window
            assert [rows[key][f] for f in fields] == [None] * 4, key
            continue
        for f in fields:
            assert rows[key][f] == pytest.approx(getattr(want, f), rel=1e-6), (key, f)
    assert [rows["shop", "ghost"][f] for f in fields] == [None] * 4

    # the classic traps, spelled out
    assert rows["legacy", "mainframe-gw"]["mtls_coverage_pct"] == 0.0
    assert rows["legacy", "reports-export"]["success_rate_pct"] == 0.0
    assert rows["shop", "api"]["request_rate"] != rows["payments", "api"]["request_rate"]

    # every figure equals Prometheus's own evaluation of a hand-written per-service expression
    for (ns, name), row in rows.items():
        if row["request_rate"] is None:
            continue
        sel = f'reporter="destination",destination_service_namespace="{ns}",destination_service_name="{name}"'
        total = f"sum(rate(istio_requests_total{{{sel}}}[5m]))"
        ok = f'sum(rate(istio_requests_total{{{sel},response_code!~"5.."}}[5m]))'
        mtls = f'sum(rate(istio_requests_total{{{sel},connection_security_policy="mutual_tls"}}[5m]))'
        p99 = f"histogram_quantile(0.99, sum by (le) (rate(istio_request_duration_milliseconds_bucket{{{sel}}}[5m])))"
        assert row["request_rate"] == pytest.approx(direct(demo_prom.url, total, at), rel=1e-6)
        for field, numerator in (("success_rate_pct", ok), ("mtls_coverage_pct", mtls)):
            value = direct(demo_prom.url, f"100 * {numerator} / {total}", at)
            assert row[field] == pytest.approx(0.0 if value is None else value, rel=1e-6, abs=1e-9), (ns, name, field)
        assert row["p99_latency_ms"] == pytest.approx(direct(demo_prom.url, p99, at), rel=1e-6)

    # Datadog got exactly those points: four per service with traffic, none for the others
    sent = {(p.metric, p.tags, p.timestamp): p.value for p in intake.points()}
    want_points: dict[tuple[str, tuple[str, ...], int], Any] = {}
    for (ns, name), row in rows.items():
        tags = tuple(
            sorted(
                (
                    f"service:{name}",
                    f"kube_service:{name}",
                    f"kube_namespace:{ns}",
                    "env:test",
                    "kube_cluster_name:local",
                )
            )
        )
        for field, metric in METRICS.items():
            if row[field] is not None:
                want_points[metric, tags, at] = row[field]
    assert len(intake.points()) == len(want_points) == 4 * (len(migrated) - 1)
    assert sent == want_points
    assert {p.type for p in intake.points()} == {3}
    assert 1 <= len(intake.requests) <= 2  # most points sent while the p99 query runs, then the rest


def test_once_table_is_readable(demo_prom: DemoProm, kube: tuple[FakeKubeAPI, Path], intake: FakeIntake) -> None:
    proc = run_exporter(exporter_env(demo_prom, kube[1], intake), "once", "--at", str(int(demo_prom.at)))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split()[:2] == ["NAMESPACE", "SERVICE"]
    names = [tuple(line.split()[:2]) for line in lines[1:]]
    assert names == sorted(names) and ("legacy", "mainframe-gw") in names
    assert intake.requests == []  # no --submit, nothing sent


def test_namespaces_setting_limits_discovery_and_queries(
    demo_prom: DemoProm, kube: tuple[FakeKubeAPI, Path], intake: FakeIntake
) -> None:
    env = exporter_env(demo_prom, kube[1], intake, EXPORTER_NAMESPACES="payments,legacy")
    proc = run_exporter(env, "once", "--at", str(int(demo_prom.at)), "--output", "json")
    assert proc.returncode == 0, proc.stderr
    got = {(s["namespace"], s["service"]) for s in json.loads(proc.stdout)["services"]}
    assert got == {
        (s.namespace, s.name) for s in demo_prom.services if s.migrated and s.namespace in ("payments", "legacy")
    }


def test_kubernetes_down_is_a_clear_failure(
    demo_prom: DemoProm, kube: tuple[FakeKubeAPI, Path], intake: FakeIntake
) -> None:
    api, kubeconfig = kube
    api.set_unavailable(True)
    try:
        proc = run_exporter(exporter_env(demo_prom, kubeconfig, intake), "once", "--submit")
    finally:
        api.set_unavailable(False)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    last = json.loads(lines[-1])  # not a terminal: JSON lines only, the error once
    assert last["event"] == "command failed" and last["level"] == "error"
    assert last["error"].startswith("list Services (migrated=true) in all namespaces -> 503")
    assert [line for line in lines if "command failed" in line] == [lines[-1]]
    assert not [line for line in lines if line.startswith("exporter:")]
    assert API_KEY not in proc.stderr and intake.requests == []

    # asked for the console format (as on a terminal): the same error as one human line, no JSON
    api.set_unavailable(True)
    try:
        env = exporter_env(demo_prom, kubeconfig, intake, EXPORTER_LOG_FORMAT="console")
        proc = run_exporter(env, "once", "--submit")
    finally:
        api.set_unavailable(False)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and not [line for line in lines if line.startswith("{")]
    assert lines[-1].startswith("exporter: list Services (migrated=true) in all namespaces -> 503")
    assert [line for line in lines if "in all namespaces -> 503" in line and "attempt" not in line] == [lines[-1]]


def test_prometheus_down_sends_nothing_and_fails(
    kube: tuple[FakeKubeAPI, Path], intake: FakeIntake, demo_prom: DemoProm
) -> None:
    env = exporter_env(
        demo_prom,
        kube[1],
        intake,
        EXPORTER_PROMETHEUS_URL="http://127.0.0.1:9",
        EXPORTER_PROMETHEUS_TIMEOUT_SECONDS="1",
    )
    proc = run_exporter(env, "once", "--output", "json", "--submit")
    assert proc.returncode == 1
    doc = json.loads(proc.stdout)
    assert {e["query"] for e in doc["errors"]} == {"requests", "ok", "mtls", "p99"}
    assert all(s["request_rate"] is None for s in doc["services"])
    assert intake.points() == []  # never a zero in place of a failure
    assert len(doc["services"]) == sum(1 for s in demo_prom.services if s.migrated) + 1


def test_a_service_named_exporter_in_the_namespace_breaks_nothing(
    demo_prom: DemoProm, kube: tuple[FakeKubeAPI, Path], intake: FakeIntake
) -> None:
    # what the kubelet injects for Services `exporter` (port 8000 named http) and `exporter-metrics`
    links = {
        "EXPORTER_SERVICE_HOST": "10.96.0.12", "EXPORTER_SERVICE_PORT": "8000", "EXPORTER_SERVICE_PORT_HTTP": "8000",
        "EXPORTER_PORT": "tcp://10.96.0.12:8000", "EXPORTER_PORT_8000_TCP": "tcp://10.96.0.12:8000",
        "EXPORTER_PORT_8000_TCP_PROTO": "tcp", "EXPORTER_PORT_8000_TCP_PORT": "8000",
        "EXPORTER_PORT_8000_TCP_ADDR": "10.96.0.12", "EXPORTER_METRICS_SERVICE_HOST": "10.96.0.13",
        "EXPORTER_METRICS_PORT": "tcp://10.96.0.13:9100",
    }  # fmt: skip
    env = exporter_env(demo_prom, kube[1], intake, **links)
    proc = run_exporter(env, "once", "--at", str(int(demo_prom.at)), "--output", "json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["services"]

    # a Service `exporter-http` lands on a real setting: exit 2, naming the cause and the fix
    env = exporter_env(demo_prom, kube[1], intake, EXPORTER_HTTP_PORT="tcp://10.0.0.1:80")
    proc = run_exporter(env, "once")
    assert proc.returncode == 2
    (line,) = proc.stderr.splitlines()
    assert line.startswith("exporter: config error: EXPORTER_HTTP_PORT: holds 'tcp://10.0.0.1:80'")
    assert "'exporter-http'" in line and "enableServiceLinks: false" in line
