"""VictoriaMetrics as the backend: `exporter once` and the recording-rule mode against a real
VictoriaMetrics loaded with the demo mesh. Every figure is checked against VictoriaMetrics' own evaluation
of hand-written PromQL; the rules are evaluated by VictoriaMetrics' own ruler (vmalert, replay mode)."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from exporter.model import Figures
from exporter.query import figures, promql
from exporter.query.prometheus import PrometheusClient
from sandbox.intake import FakeIntake
from sandbox.kubeapi import FakeKubeAPI
from sandbox.meshsim import kube_service_manifests
from sandbox.victoria import VictoriaMetricsServer
from tests.support.procs import API_KEY, exporter_env, run_exporter
from tests.support.prom import DemoProm
from tests.support.rules import vmalert_replay

pytestmark = pytest.mark.integration

FIELDS = ("request_rate", "success_rate_pct", "mtls_coverage_pct", "p99_latency_ms")
RULES_SPAN = 600.0


@pytest.fixture(scope="module")
def victoria(demo_prom: DemoProm, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoProm]:
    """The demo mesh in VictoriaMetrics, with the recorded series of `exporter rules` replayed by vmalert."""
    tmp = tmp_path_factory.mktemp("victoria")
    with VictoriaMetricsServer() as vm:
        vm.load(demo_prom.phases, end=demo_prom.at, step=demo_prom.step)
        proc = run_exporter({"PATH": "/usr/bin:/bin"}, "rules")
        assert proc.returncode == 0, proc.stderr
        (tmp / "rules.yml").write_text(proc.stdout)
        vmalert_replay(vm.url, tmp / "rules.yml", start=demo_prom.at - RULES_SPAN, end=demo_prom.at, workdir=tmp)
        yield dataclasses.replace(demo_prom, url=vm.url)


@pytest.fixture(scope="module")
def kube(demo_prom: DemoProm, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with FakeKubeAPI() as api:
        for manifest in kube_service_manifests(demo_prom.services):
            api.add(manifest)
        yield api.write_kubeconfig(tmp_path_factory.mktemp("kube") / "kubeconfig")


def direct(url: str, query: str, at: float) -> float | None:
    """One hand-written PromQL expression evaluated by VictoriaMetrics itself; None for an empty result."""
    r = requests.get(f"{url}/api/v1/query", params={"query": query, "time": f"{at:.3f}"}, timeout=30)
    r.raise_for_status()
    result = r.json()["data"]["result"]
    assert len(result) <= 1, result
    return float(result[0]["value"][1]) if result else None


def hand_written(url: str, ns: str, name: str, at: float) -> dict[str, float | None]:
    sel = f'reporter="destination",destination_service_namespace="{ns}",destination_service_name="{name}"'
    total = f"sum(rate(istio_requests_total{{{sel}}}[5m]))"
    ok = f'sum(rate(istio_requests_total{{{sel},response_code!~"5.."}}[5m]))'
    mtls = f'sum(rate(istio_requests_total{{{sel},connection_security_policy="mutual_tls"}}[5m]))'
    p99 = f"histogram_quantile(0.99, sum by (le) (rate(istio_request_duration_milliseconds_bucket{{{sel}}}[5m])))"
    out: dict[str, float | None] = {"request_rate": direct(url, total, at), "p99_latency_ms": direct(url, p99, at)}
    for field, numerator in (("success_rate_pct", ok), ("mtls_coverage_pct", mtls)):
        value = direct(url, f"100 * {numerator} / {total}", at)
        out[field] = 0.0 if value is None and out["request_rate"] else value  # no numerator series: 0 %
    return out


def close(a: float | None, b: float | None) -> bool:
    return (a is None and b is None) or (
        a is not None and b is not None and math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    )


def rows_of(stdout: str) -> dict[tuple[str, str], dict[str, Any]]:
    return {(s["namespace"], s["service"]): s for s in json.loads(stdout)["services"]}


def test_once_on_victoria_matches_its_own_evaluation(victoria: DemoProm, kube: Path) -> None:
    at = int(victoria.at)
    with FakeIntake(api_key=API_KEY) as intake:
        proc = run_exporter(
            exporter_env(victoria, kube, intake), "once", "--at", str(at), "--output", "json", "--submit"
        )
        points = intake.points()
    assert proc.returncode == 0, proc.stderr
    rows = rows_of(proc.stdout)
    assert set(rows) == {(s.namespace, s.name) for s in victoria.services if s.migrated}
    with_traffic = 0
    for (ns, name), row in rows.items():
        want = hand_written(victoria.url, ns, name, at)
        if not want["request_rate"]:
            assert [row[f] for f in FIELDS] == [None] * 4, (ns, name)
            continue
        with_traffic += 1
        for field in FIELDS:
            assert close(row[field], want[field]), (ns, name, field, row[field], want[field])
    assert with_traffic >= 10 and len(points) == 4 * with_traffic
    assert rows["legacy", "mainframe-gw"]["mtls_coverage_pct"] == 0.0
    assert rows["legacy", "reports-export"]["success_rate_pct"] == 0.0


def evaluation_instant(url: str, at: float) -> float:
    """The last instant at or before `at` at which vmalert recorded the request rates (from the export API)."""
    name = promql.recorded_name("requests", window="5m")
    r = requests.get(f"{url}/api/v1/export", params={"match[]": name}, timeout=30)
    r.raise_for_status()
    stamps = {t for line in r.text.splitlines() if line for t in json.loads(line)["timestamps"]}
    assert stamps, f"vmalert recorded no {name}"
    return max(t for t in stamps if t <= at * 1000) / 1000


def test_recorded_figures_on_victoria_equal_raw_ones(victoria: DemoProm, kube: Path) -> None:
    t = evaluation_instant(victoria.url, victoria.at)
    assert victoria.at - RULES_SPAN < t <= victoria.at
    client = PrometheusClient(victoria.url)
    try:
        raw = figures.measure_services(client, at=t, window="5m", source="raw")
        recorded = figures.measure_services(client, at=t, window="5m", source="recorded")
    finally:
        client.close()
    assert not raw.errors and not recorded.errors and recorded.source == "recorded"
    assert recorded.figures.keys() == raw.figures.keys() and len(raw.figures) >= 10
    for key, f in raw.figures.items():
        for field in FIELDS:
            assert close(getattr(recorded.figures[key], field), getattr(f, field)), (key, field)
        want = hand_written(victoria.url, *key, t)
        assert all(close(getattr(f, field), want[field]) for field in FIELDS), (key, f, want)

    # and `exporter once` in recorded mode prints them (whole seconds: the latest recorded sample is t's)
    with FakeIntake(api_key=API_KEY) as intake:
        env = exporter_env(victoria, kube, intake, EXPORTER_FIGURE_SOURCE="recorded")
        proc = run_exporter(env, "once", "--at", str(math.ceil(t)), "--output", "json")
    assert proc.returncode == 0, proc.stderr
    got = {k: Figures(**{f: r[f] for f in FIELDS}) for k, r in rows_of(proc.stdout).items() if r["request_rate"]}
    migrated = {(s.namespace, s.name) for s in victoria.services if s.migrated}
    assert got.keys() == {k for k in raw.figures if k in migrated}
    for key, f in got.items():
        assert all(close(getattr(f, x), getattr(raw.figures[key], x)) for x in FIELDS), key
