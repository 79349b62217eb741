"""Recording-rule mode end to end: `exporter rules` is a valid rule file; backfilled over the demo mesh by
promtool against a real Prometheus, its recorded series give every figure the raw queries give at the same
rule-evaluation instant (relative 1e-9); `auto` falls back to raw where the recorded series are absent."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from structlog.testing import capture_logs

from exporter.model import Figures
from exporter.query import figures, promql
from exporter.query.prometheus import PrometheusClient
from sandbox.intake import FakeIntake
from sandbox.kubeapi import FakeKubeAPI
from sandbox.meshsim import demo_mesh, kube_service_manifests
from sandbox.prom import PrometheusServer, build_tsdb
from tests.support.expected import expected
from tests.support.procs import exporter_env, run_exporter
from tests.support.prom import DEMO_STEP, DemoProm
from tests.support.rules import backfill_rules, check_rules

pytestmark = pytest.mark.integration

AT = 1_790_000_000 - 1_790_000_000 % 3600  # a fixed instant: rule-evaluation instants are reproducible
RULES_SPAN = 600.0  # the rules are backfilled over the last 10 minutes only
FIELDS = ("request_rate", "success_rate_pct", "mtls_coverage_pct", "p99_latency_ms")


@dataclass(frozen=True)
class RuledProm:
    demo: DemoProm
    evaluated: float
    """The last rule-evaluation instant at or before demo.at (unix seconds, millisecond precision)."""


def rule_file(tmp: Path, *extra: str) -> Path:
    path = tmp / "rules.yml"
    proc = run_exporter({"PATH": "/usr/bin:/bin", **dict(a.split("=", 1) for a in extra)}, "rules")
    assert proc.returncode == 0, proc.stderr
    path.write_text(proc.stdout)
    return path


@pytest.fixture(scope="module")
def ruled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RuledProm]:
    tmp = tmp_path_factory.mktemp("rules")
    phases = demo_mesh(AT)
    build_tsdb(phases, tmp / "tsdb", end=AT, step=DEMO_STEP)
    rules = rule_file(tmp)
    assert "SUCCESS: 4 rules found" in check_rules(rules)
    server = backfill_rules(PrometheusServer(tmp / "tsdb").start(), rules, start=AT - RULES_SPAN, end=AT)
    try:
        r = requests.get(
            f"{server.url}/api/v1/query",
            params={"query": f"max(timestamp({promql.recorded_name('requests', window='5m')}))", "time": AT},
            timeout=10,
        )
        evaluated = float(r.json()["data"]["result"][0]["value"][1])
        assert AT - 30 < evaluated <= AT
        yield RuledProm(DemoProm(url=server.url, phases=phases, at=AT, step=DEMO_STEP), evaluated)
    finally:
        server.stop()


def measured(url: str, source: figures.Source, at: float) -> figures.Measurement:
    client = PrometheusClient(url)
    try:
        return figures.measure_services(client, at=at, window="5m", source=source)
    finally:
        client.close()


def assert_same(got: dict[figures.Key, Figures], want: dict[figures.Key, Figures], rel: float = 1e-9) -> None:
    assert got.keys() == want.keys()
    for key, f in want.items():
        for field in FIELDS:
            a, b = getattr(got[key], field), getattr(f, field)
            assert (a is None and b is None) or math.isclose(a, b, rel_tol=rel, abs_tol=1e-12), (key, field, a, b)


def test_recorded_figures_equal_raw_figures_at_the_evaluation_instant(ruled: RuledProm) -> None:
    raw = measured(ruled.demo.url, "raw", ruled.evaluated)
    recorded = measured(ruled.demo.url, "recorded", ruled.evaluated)
    assert raw.source == "raw" and recorded.source == "recorded" and not raw.errors and not recorded.errors
    assert_same(recorded.figures, raw.figures)
    # and both are the figures the generator promises (the window lies wholly in the last phase)
    services = {(s.namespace, s.name): s for s in ruled.demo.services}
    with_traffic = {k for k, s in services.items() if expected(s) is not None}
    assert set(recorded.figures) == with_traffic
    for key, f in recorded.figures.items():
        want = expected(services[key])
        assert want is not None
        for field in FIELDS:
            assert getattr(f, field) == pytest.approx(getattr(want, field), rel=1e-6), (key, field)
    assert recorded.figures["legacy", "mainframe-gw"].mtls_coverage_pct == 0.0
    assert recorded.figures["legacy", "reports-export"].success_rate_pct == 0.0


def test_auto_reads_recorded_series_and_falls_back_to_raw_once(ruled: RuledProm) -> None:
    before = ruled.evaluated - RULES_SPAN - 120  # no recorded sample within the 5m look-back there
    with capture_logs() as logs:
        fallback = measured(ruled.demo.url, "auto", before)
        again = measured(ruled.demo.url, "auto", before)
        recorded = measured(ruled.demo.url, "auto", ruled.evaluated)
    assert fallback.source == again.source == "raw" and recorded.source == "recorded"
    assert fallback.figures and measured(ruled.demo.url, "recorded", before).figures == {}
    assert_same(fallback.figures, measured(ruled.demo.url, "raw", before).figures)
    assert_same(recorded.figures, measured(ruled.demo.url, "raw", ruled.evaluated).figures)
    switches = [(e["source"], e["previous"]) for e in logs if e["event"] == "figure source"]
    assert switches[-2:] == [("raw", switches[-2][1]), ("recorded", "raw")]  # each switch logged once
    assert len([s for s in switches if s[0] == "raw"]) == 1


def test_once_in_recorded_mode_prints_the_raw_figures(ruled: RuledProm, tmp_path: Path) -> None:
    at = math.ceil(ruled.evaluated)  # --at takes whole seconds; the recorded sample at `evaluated` is the latest
    migrated = {(s.namespace, s.name) for s in ruled.demo.services if s.migrated}
    raw = {k: f for k, f in measured(ruled.demo.url, "raw", ruled.evaluated).figures.items() if k in migrated}
    with FakeKubeAPI() as api, FakeIntake() as intake:
        for manifest in kube_service_manifests(ruled.demo.services):
            api.add(manifest)
        env = exporter_env(ruled.demo, api.write_kubeconfig(tmp_path / "kc"), intake, EXPORTER_FIGURE_SOURCE="recorded")
        proc = run_exporter(env, "once", "--at", str(at), "--output", "json")
    assert proc.returncode == 0, proc.stderr
    rows = {(s["namespace"], s["service"]): s for s in json.loads(proc.stdout)["services"]}
    got = {k: Figures(**{f: row[f] for f in FIELDS}) for k, row in rows.items() if row["request_rate"] is not None}
    assert_same(got, raw)
