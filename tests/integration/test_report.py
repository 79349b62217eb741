"""`exporter report mtls` end to end: a real Prometheus holding 15 days of a generated mesh (last week
differs from this one), PeerAuthentication objects of every scope in a local Kubernetes API, the real
datadog-api-client against a local intake, and the HTML page rendered by headless Chromium.

Expected figures are computed here from the generator's parameters: a caller sends `rps` requests per
second, `rps × (1 − mtls_share)` of them plaintext, for the whole of its phase.
"""

from __future__ import annotations

import html
import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import requests

from exporter.cli.report import generate, policies
from exporter.config import Settings
from exporter.kube.client import KubeClient, api_client
from exporter.model import ServiceRef
from exporter.mtls.model import PolicyTimeline, Report, Verdict
from exporter.mtls.policy import Evidence, Mode
from exporter.mtls.publish import MESH_METRIC, PLAINTEXT_METRIC
from exporter.mtls.render import change_text, count_text, html_page, pct_text, rate_text
from exporter.retry import RetryPolicy
from sandbox.intake import FakeIntake
from sandbox.kubeapi import FakeKubeAPI
from sandbox.meshsim import Caller, Phase, Service, Version, kube_service_manifests
from sandbox.prom import PrometheusServer, build_tsdb
from tests.support.prom import PrometheusFactory

STEP = 1200.0  # 20 minutes: counters are linear within a phase, so rate() is exact at any step
DAY, WEEK = 86400.0, 7 * 86400.0
API_KEY = "dd-api-key-for-report-tests-0123"
ROOT = "istio-system"
CHROMIUM = "/usr/bin/chromium"


def outside(rps: float) -> Caller:
    return Caller("unknown", "unknown", rps, mtls_share=0.0)


def week(this: bool) -> tuple[Service, ...]:
    """The mesh in one week; `this=False` is the previous week."""
    web = "web", "frontend"
    return (
        # shop: every caller uses mTLS this week; batch/exporter sent plaintext last week and stopped
        Service("shop", "cart", (Caller(*web, 30.0),)),
        Service(
            "shop",
            "checkout",
            (Caller(*web, 10.0), Caller("cart", "shop", 5.0), Caller("exporter", "batch", 0.0 if this else 2.0, 0.0)),
        ),
        # shop/inventory lost its sidecar this week: only its caller's proxy still reports the 1.9 req/s; a caller
        # from outside the mesh sent it plaintext last week, and no proxy can tell whether it still does
        Service(
            "shop", "inventory", (Caller("checkout", "shop", 1.9, 0.0), outside(0.0 if this else 0.3)), sidecar=not this
        ),
        # legacy: plaintext from shop/checkout (half of it this week, 3/4 last week) and from outside the mesh;
        # two destinations that are not migrated Services
        Service("legacy", "mainframe-gw", (Caller("checkout", "shop", 4.0, 0.5 if this else 0.25), outside(2.0))),
        Service("legacy", "ftp-bridge", (outside(0.5),), migrated=False),
        Service("legacy", "report-db", (Caller("checkout", "shop", 1.0),), migrated=False),
        # payments: STRICT; ledger's port exception may explain its plaintext this week (5 %)
        Service("payments", "api", (Caller("checkout", "shop", 8.0),)),
        Service("payments", "ledger", (Caller("api", "payments", 6.0, 0.95 if this else 1.0),)),
        # billing: STRICT and clean
        Service("billing", "invoices", (Caller("api", "payments", 3.0),)),
        # catalog: STRICT, with a workload and a port exception, and plaintext only where excepted: search (a
        # workload policy) still gets 10 % (last week 20 %) plaintext, products (a port exception) 1 % this week
        Service("catalog", "search", (Caller(*web, 20.0, 0.9 if this else 0.8),)),
        Service("catalog", "products", (Caller(*web, 40.0, 0.99 if this else 1.0),)),
        # vault: STRICT since mid-week; plaintext reaches secrets, which no policy excepts
        Service("vault", "secrets", (Caller("api", "payments", 2.0, 0.75),)),
        # archive: traffic last week only
        Service("archive", "old-api", (Caller("reports", "archive", 0.0 if this else 1.0, 0.5),)),
        # lab: mTLS disabled by policy, all plaintext, and a tiny rate
        Service("lab", "sandbox", (Caller("notebook", "lab", 3.0, 0.0), Caller("cron", "lab", TINY, 0.0))),
    )


TINY = 0.00002  # 1.2 requests per minute... per 1000 minutes: printed as 0.00002, never 2e-05


def pa(namespace: str, name: str, mode: str | None, created: str, changed: str = "", **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = dict(spec)
    if mode is not None:
        body["mtls"] = {"mode": mode}
    meta: dict[str, Any] = {"namespace": namespace, "name": name, "creationTimestamp": created}
    if changed:
        meta["managedFields"] = [
            {"manager": "kubectl-create", "operation": "Update", "time": created},
            {"manager": "kubectl-edit", "operation": "Update", "time": changed},
        ]
    return {"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication", "metadata": meta, "spec": body}


def iso(at: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))


def policies_at(at: int) -> tuple[dict[str, Any], ...]:
    """The PeerAuthentications; vault's is created and catalog's exception edited during this week."""
    return (
        pa(ROOT, "default", "PERMISSIVE", "2025-01-01T00:00:00Z"),  # mesh-wide: applies (oldest)
        pa(ROOT, "strict-everywhere", "STRICT", "2026-02-01T00:00:00Z"),  # newer mesh-wide: ignored
        pa(ROOT, "ingress", "STRICT", "2025-01-02T00:00:00Z", selector={"matchLabels": {"app": "ingress"}}),
        pa("legacy", "default", "UNSET", "2025-03-01T00:00:00Z"),  # inherits PERMISSIVE
        pa("payments", "default", "STRICT", "2025-03-01T00:00:00Z"),
        pa(
            "payments",
            "ledger-metrics",
            None,
            "2025-03-02T00:00:00Z",
            selector={"matchLabels": {"app": "ledger"}},
            portLevelMtls={"15020": {"mode": "DISABLE"}},
        ),
        pa("billing", "default", "STRICT", "2025-03-01T00:00:00Z"),
        pa("catalog", "default", "STRICT", "2025-03-01T00:00:00Z"),
        pa(
            "catalog",
            "search-legacy",
            "PERMISSIVE",
            "2025-03-02T00:00:00Z",
            iso(at - 2 * DAY),
            selector={"matchLabels": {"app": "search"}},
        ),
        pa(
            "catalog",
            "products-metrics",
            None,
            "2025-03-03T00:00:00Z",
            selector={"matchLabels": {"app": "products"}},
            portLevelMtls={"9090": {"mode": "PERMISSIVE"}},
        ),
        pa("vault", "default", "STRICT", iso(at - 3 * DAY)),
        pa("vault", "exporter", "PERMISSIVE", iso(at - 3 * DAY), selector={"matchLabels": {"app": "exporter"}}),
        pa("archive", "default", "PERMISSIVE", "2025-03-01T00:00:00Z"),
        pa("lab", "default", "DISABLE", "2025-03-01T00:00:00Z"),
        pa("quiet", "default", "STRICT", "2025-03-01T00:00:00Z"),  # a namespace with a policy and no traffic at all
    )


GHOST = ServiceRef("shop", "ghost")  # migrated, never seen by Prometheus
MESH_PCT = 100 * 123.8 / (134.5 + TINY)

EXPECTED_VERDICTS = {
    "shop": Verdict.READY,
    "legacy": Verdict.BLOCKED,
    "payments": Verdict.STRICT_EXCEPTED,
    "billing": Verdict.STRICT_CLEAN,
    "catalog": Verdict.STRICT_EXCEPTED,
    "vault": Verdict.STRICT_PLAINTEXT,
    "lab": Verdict.DISABLED,
    "archive": Verdict.NO_TRAFFIC,
    "quiet": Verdict.NO_TRAFFIC,
}


# ------------------------------------------------------------------------------------ expectations
@dataclass(frozen=True)
class Totals:
    rate: float
    plaintext: float

    @property
    def pct(self) -> float:
        return 100.0 * (self.rate - self.plaintext) / self.rate


def totals(services: Sequence[Service], keep: Any = lambda s: True) -> Totals | None:
    """What the destinations report: a service without a sidecar reports nothing."""
    services = [s for s in services if s.sidecar and keep(s)]
    rate = sum(c.rps for s in services for c in s.callers)
    plain = sum(c.rps * (1 - c.mtls_share) for s in services for c in s.callers)
    return Totals(rate, plain) if rate > 0 else None


def plaintext_callers(services: Sequence[Service]) -> dict[tuple[str, str, str, str], float]:
    return {
        (s.namespace, s.name, c.workload, c.namespace): c.rps * (1 - c.mtls_share)
        for s in services
        if s.sidecar
        for c in s.callers
        if c.rps * (1 - c.mtls_share) > 0
    }


def close(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


# ----------------------------------------------------------------------------------------- fixtures
@dataclass(frozen=True)
class Env:
    prom_url: str
    at: int
    kube: FakeKubeAPI
    kubeconfig: Path

    def settings(self, **extra: Any) -> Settings:
        return Settings(prometheus_url=self.prom_url, kubeconfig=str(self.kubeconfig), **extra)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    at = int(math.floor(time.time() / STEP) * STEP)
    phases = (Phase(at - 15 * DAY, week(this=False)), Phase(at - WEEK, week(this=True)))
    tsdb = tmp_path_factory.mktemp("report-prometheus") / "tsdb"
    # week-long blocks: promtool takes ~4x longer to cut 15 days into the default 24h blocks
    build_tsdb(phases, tsdb, end=at, step=STEP, max_block_duration="168h")
    with PrometheusServer(tsdb) as server, FakeKubeAPI(page_limit_cap=3) as kube:
        for manifest in kube_service_manifests(week(this=True)):
            kube.add(manifest)
        kube.add(kube_service_manifests([Service(GHOST.namespace, GHOST.name, ())])[0])
        for obj in policies_at(at):
            kube.add(obj)
        yield Env(server.url, at, kube, kube.write_kubeconfig(tmp_path_factory.mktemp("kube") / "kubeconfig"))


@pytest.fixture(scope="module")
def report(env: Env) -> Report:
    return generate(env.settings(), at=env.at, window="7d")


@pytest.fixture
def intake() -> Iterator[FakeIntake]:
    with FakeIntake(api_key=API_KEY) as server:
        yield server


def run_exporter(env: Env, intake: FakeIntake | None, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("EXPORTER_", "DD_")) and k != "KUBECONFIG"}
    environ.update(EXPORTER_PROMETHEUS_URL=env.prom_url, KUBECONFIG=str(env.kubeconfig), EXPORTER_TAGS="env:test")
    environ.update(extra)
    if intake is not None:
        environ.update(EXPORTER_DATADOG_URL=intake.url, DD_API_KEY=API_KEY)
    return subprocess.run(
        [sys.executable, "-m", "exporter", "report", "mtls", *args],
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
    )


# -------------------------------------------------------------------------------------------- tests
def test_coverage_matches_the_generator_for_mesh_namespaces_and_services(report: Report) -> None:
    this, last = week(this=True), week(this=False)
    seconds = WEEK
    assert report.seconds == seconds and report.window == "7d"
    # requests, plaintext and the callers' side of blind destinations, this window and the previous one, and
    # the callers' side of the in-mesh callers that stopped (batch/exporter, archive/reports)
    assert report.promql_requests == 7

    for got, want in ((report.mesh.current, totals(this)), (report.mesh.previous, totals(last))):
        assert got is not None and want is not None
        assert close(got.rate, want.rate) and close(got.plaintext_rate, want.plaintext)
        assert close(got.pct, want.pct) and close(got.requests, want.rate * seconds)
    # by hand: 134.5 req/s this week (+ TINY), 10.7 of them plaintext (4 mainframe-gw, 0.5 ftp-bridge, 0.3 ledger,
    # 2 search, 0.4 products, 0.5 secrets, 3 sandbox; + TINY); inventory's 1.9 req/s reach no destination-side series
    assert close(report.mesh.current.pct, MESH_PCT)  # type: ignore[union-attr]
    assert close(report.mesh.change, totals(this).pct - totals(last).pct)  # type: ignore[union-attr]

    namespaces = {n.namespace: n for n in report.namespaces}
    assert set(namespaces) == set(EXPECTED_VERDICTS)
    for ns, row in namespaces.items():
        want_now = totals(this, lambda s, ns=ns: s.namespace == ns)
        want_before = totals(last, lambda s, ns=ns: s.namespace == ns)
        for got, want in ((row.coverage.current, want_now), (row.coverage.previous, want_before)):
            assert (got is None) == (want is None), ns
            if got is not None and want is not None:
                assert close(got.pct, want.pct), (ns, got.pct, want.pct)
                assert close(got.requests, want.rate * seconds), ns

    migrated = {ServiceRef(s.namespace, s.name) for s in this if s.migrated} | {GHOST}
    assert {s.service for s in report.services} == migrated  # ftp-bridge is not migrated
    for row in report.services:
        key = (row.service.namespace, row.service.name)
        want = totals(this, lambda s, key=key: (s.namespace, s.name) == key)
        if want is None:
            assert row.coverage.current is None, row.service
        else:
            assert row.coverage.current is not None and close(row.coverage.current.pct, want.pct), row.service
            assert close(row.coverage.current.requests, want.rate * seconds)


def test_coverage_agrees_with_prometheus_own_mutual_tls_ratio(env: Env, report: Report) -> None:
    """The report takes all − plaintext; Prometheus, asked the textbook ratio mutual_tls / all, must agree."""

    def ratio(offset: str) -> dict[str, float]:
        everything = 'istio_requests_total{reporter="destination"}[7d]' + offset
        mtls = 'istio_requests_total{reporter="destination",connection_security_policy="mutual_tls"}[7d]' + offset
        by = "sum by (destination_service_namespace)"
        query = f"100 * {by} (rate({mtls})) / {by} (rate({everything}))"
        answer = requests.get(f"{env.prom_url}/api/v1/query", params={"query": query, "time": env.at}, timeout=10)
        answer.raise_for_status()
        result = answer.json()["data"]["result"]
        values = {r["metric"]["destination_service_namespace"]: float(r["value"][1]) for r in result}
        return {ns: v for ns, v in values.items() if not math.isnan(v)}  # 0/0: archive this week, no traffic

    for offset, pick in (("", lambda t: t.current), (" offset 7d", lambda t: t.previous)):
        prometheus = ratio(offset)
        ours = {n.namespace: pick(n.coverage).pct for n in report.namespaces if pick(n.coverage) is not None}
        # lab receives no mutual_tls series at all: the textbook ratio has no answer there (the 0 % trap)
        assert set(prometheus) == set(ours) - {"lab"}, offset
        assert ours["lab"] == 0.0
        for ns, value in prometheus.items():
            assert close(ours[ns], value), (offset, ns)


def test_rows_are_worst_first_with_no_traffic_last(report: Report) -> None:
    with_traffic = [s for s in report.services if s.coverage.current is not None]
    assert [s.service for s in report.services[len(with_traffic) :]] == sorted(
        s.service for s in report.services if s.coverage.current is None
    )
    pcts = [s.coverage.current.pct for s in with_traffic]  # type: ignore[union-attr]
    assert pcts == sorted(pcts)
    # lab/sandbox 0 %, legacy/mainframe-gw 1/3 of 6 req/s mTLS, vault/secrets 75 %, catalog/search 90 %, ledger 95 %
    assert [str(s.service) for s in with_traffic[:5]] == [
        "lab/sandbox",
        "legacy/mainframe-gw",
        "vault/secrets",
        "catalog/search",
        "payments/ledger",
    ]
    assert [n.namespace for n in report.namespaces][-2:] == ["archive", "quiet"]
    # equal coverage (100 %): the bigger volume comes first
    full = [s for s in with_traffic if s.coverage.current.pct == 100.0]  # type: ignore[union-attr]
    rates = [s.coverage.current.rate for s in full]  # type: ignore[union-attr]
    assert rates == sorted(rates, reverse=True) and len(full) == 4


def test_every_verdict_and_the_policy_behind_it(report: Report) -> None:
    namespaces = {n.namespace: n for n in report.namespaces}
    assert {ns: row.verdict for ns, row in namespaces.items()} == EXPECTED_VERDICTS
    assert {ns: row.policy.mode for ns, row in namespaces.items()} == {
        "shop": Mode.PERMISSIVE,  # no namespace policy: the mesh's oldest mesh-wide one
        "legacy": Mode.PERMISSIVE,  # UNSET inherits the mesh
        "payments": Mode.STRICT,
        "billing": Mode.STRICT,
        "catalog": Mode.STRICT,
        "vault": Mode.STRICT,
        "lab": Mode.DISABLE,
        "archive": Mode.PERMISSIVE,
        "quiet": Mode.STRICT,
    }
    assert namespaces["shop"].policy.source == f"{ROOT}/default"
    assert namespaces["legacy"].policy.source == "legacy/default"
    assert (report.mesh_policy.mode, report.mesh_policy.source) == (Mode.PERMISSIVE, f"{ROOT}/default")
    assert [e.describe() for e in namespaces["catalog"].policy.exceptions] == [
        "workloads app=search (catalog/search-legacy): PERMISSIVE",
        "workloads app=products (catalog/products-metrics): STRICT; port 9090: PERMISSIVE",
    ]
    assert [e.describe() for e in namespaces["payments"].policy.exceptions] == [
        "workloads app=ledger (payments/ledger-metrics): STRICT; port 15020: DISABLE"
    ]
    ignored = " | ".join(report.ignored_policies)
    assert f"{ROOT}/strict-everywhere" in ignored and f"{ROOT}/ingress" in ignored
    assert len(report.ignored_policies) == 2
    # blocked lists its plaintext callers
    assert {c.name for c in namespaces["legacy"].callers} == {"shop/checkout", "outside the mesh (unknown)"}
    assert namespaces["shop"].callers == ()


def test_plaintext_offenders_are_named_with_their_rates_and_last_weeks(report: Report) -> None:
    now, before = plaintext_callers(week(this=True)), plaintext_callers(week(this=False))
    got = {(c.destination.namespace, c.destination.name, c.workload, c.namespace): c for c in report.offenders}
    assert set(got) == set(now)
    for key, caller in got.items():
        assert close(caller.rate, now[key]), key
        assert close(caller.previous_rate, before.get(key)), key
    outside_callers = {str(c.destination) for c in report.offenders if c.outside_mesh}
    assert outside_callers == {"legacy/mainframe-gw", "legacy/ftp-bridge"}
    # stopped since last week: batch/exporter → shop/checkout (2 req/s), and archive's reports (0.5 req/s)
    # shop/checkout → shop/inventory (1.9 req/s plaintext last week) is not "stopped": its proxy still sends
    stopped = {(str(c.destination), c.name): c.previous_rate for c in report.resolved}
    assert stopped == {("shop/checkout", "batch/exporter"): 2.0, ("archive/old-api", "archive/reports"): 0.5}
    assert all(c.rate == 0 for c in report.resolved)


def test_policies_are_listed_page_by_page_and_a_failed_page_is_retried(env: Env) -> None:
    env.kube.fail_next(1, status=503, path_prefix="/apis/security.istio.io")
    before = len(env.kube.requests)
    kube = KubeClient(api_client(str(env.kubeconfig)), retry=RetryPolicy(sleep=lambda s: None), page_size=3)
    objects = policies_at(env.at)
    expected = {f"{o['metadata']['namespace']}/{o['metadata']['name']}" for o in objects}
    assert {p.ref for p in policies(kube)} == expected
    calls = [r for r in env.kube.requests[before:] if r.path.startswith("/apis/security.istio.io")]
    assert [r.status for r in calls] == [503] + [200] * math.ceil(len(objects) / 3)


def test_cli_outputs_and_submits_gauges_and_an_event(env: Env, intake: FakeIntake, tmp_path: Path) -> None:
    proc = run_exporter(env, intake, "--at", str(env.at), "--output", "json", "--submit")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    this = week(this=True)
    assert doc["evaluated_at"] == env.at and doc["window_seconds"] == WEEK
    assert close(doc["mesh"]["coverage_pct"], totals(this).pct)  # type: ignore[union-attr]
    assert {n["namespace"]: n["verdict"] for n in doc["namespaces"]} == {
        ns: v.name.lower() for ns, v in EXPECTED_VERDICTS.items()
    }
    assert "submitted" in proc.stderr and API_KEY not in proc.stderr + proc.stdout

    points = [p for p in intake.points() if p.metric == "istio.service.report.mtls_coverage_pct"]
    assert not [p for p in intake.points() if p.metric.startswith("istio.mesh.")]  # the integration's namespace
    assert {p.timestamp for p in points} == {env.at}
    by_ns = {next((t.split(":", 1)[1] for t in p.tags if t.startswith("kube_namespace:")), None): p for p in points}
    with_traffic = {ns for ns, v in EXPECTED_VERDICTS.items() if v is not Verdict.NO_TRAFFIC}
    assert set(by_ns) == {None, *with_traffic}  # the mesh point carries no namespace; no point without traffic
    assert close(by_ns[None].value, totals(this).pct)  # type: ignore[union-attr]
    for ns in with_traffic:
        assert close(by_ns[ns].value, totals(this, lambda s, ns=ns: s.namespace == ns).pct)  # type: ignore[union-attr]
        assert "env:test" in by_ns[ns].tags
    events = intake.events()
    assert len(events) == 1
    assert events[0]["title"].startswith(f"mTLS coverage {MESH_PCT:.2f} % over 7d")
    assert "1 ready for STRICT" in events[0]["title"] and "1 STRICT but plaintext observed" in events[0]["title"]
    assert events[0]["alert_type"] == "warning"  # a STRICT namespace still receives plaintext
    assert "legacy/mainframe-gw" in events[0]["text"] and "outside the mesh" in events[0]["text"]

    out = tmp_path / "report.md"
    proc = run_exporter(env, None, "--at", str(env.at), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    text = out.read_text()
    assert proc.stdout == "" and text.startswith("# mTLS coverage report")
    for heading in ("## Namespaces", "## Plaintext callers", "## Services by namespace", "## Policies"):
        assert heading in text
    assert re.search(r"\| catalog \| STRICT \(catalog/default\) \| 96\.00 % \|", text), text  # 57.6/60


def test_cli_rejects_bad_flags_with_exit_2_naming_the_flag(env: Env, tmp_path: Path) -> None:
    proc = run_exporter(env, None, "--window", "7 days")
    assert proc.returncode == 2 and "--window" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    proc = run_exporter(env, None, "--at", str(env.at), "--out", str(tmp_path / "missing" / "r.md"))
    assert proc.returncode == 2 and "--out" in proc.stderr
    # before any query: neither Prometheus nor Kubernetes is reachable, yet the bad --out is what is reported
    dead = Env("http://127.0.0.1:9", env.at, env.kube, tmp_path / "no-kubeconfig")
    for out in (tmp_path / "missing" / "r.md", tmp_path):
        proc = run_exporter(dead, None, "--at", str(env.at), "--out", str(out))
        assert proc.returncode == 2 and f"--out: cannot write {out}" in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
    proc = run_exporter(env, None, "--at", str(env.at), "--submit")  # no DD_API_KEY
    assert proc.returncode == 2 and "DD_API_KEY" in proc.stderr and proc.stdout == ""


def test_cli_exits_1_without_a_report_when_prometheus_is_down(env: Env) -> None:
    dead = Env("http://127.0.0.1:9", env.at, env.kube, env.kubeconfig)
    proc = run_exporter(dead, None, "--at", str(env.at), "--output", "json")
    assert proc.returncode == 1 and proc.stdout == ""  # no half report, no zeros
    assert "cannot reach Prometheus at http://127.0.0.1:9" in proc.stderr
    assert "attempt 2/3 failed; will retry" in proc.stderr  # retried before giving up


LAYOUT_PROBE = """<script>
const frame = document.getElementById("report");
frame.addEventListener("load", () => {
  const doc = frame.contentDocument;
  const width = doc.documentElement.clientWidth;
  const rows = [...doc.querySelectorAll("#namespaces tbody tr")].map((tr) => {
    const r = tr.getBoundingClientRect();
    return {ns: tr.dataset.namespace, left: r.left, right: r.right, height: r.height};
  });
  const wide = [...doc.body.querySelectorAll("*")]
    .filter((e) => e.getBoundingClientRect().right > width + 0.5)
    .map((e) => e.tagName + "." + e.getAttribute("class"));
  const out = document.createElement("pre");
  out.id = "layout";
  const dom = doc.documentElement.outerHTML;
  out.textContent = JSON.stringify({width, scroll: doc.documentElement.scrollWidth, rows, wide, dom});
  document.body.appendChild(out);
});
</script>"""


def chromium_layout(page: str, tmp_path: Path, width: int) -> tuple[str, dict[str, Any]]:
    """The layout Chromium gives `page` in a viewport `width` CSS pixels wide, measured by a probe script in a
    host page that shows the report in a same-origin frame of that width (headless windows are at least
    500 pixels wide; a frame has the viewport, media queries included, of its own size). Returns the frame's
    DOM and the measurements."""
    path = tmp_path / f"host-{width}.html"
    frame = f'<iframe id="report" style="width:{width}px;height:900px;border:0" srcdoc="{html.escape(page)}"></iframe>'
    path.write_text(f'<!DOCTYPE html><html><body style="margin:0">{frame}{LAYOUT_PROBE}</body></html>')
    proc = subprocess.run(
        [
            shutil.which(CHROMIUM) or "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--window-size=1400,1000",
            "--virtual-time-budget=5000",
            f"--user-data-dir={tmp_path / f'profile-{width}'}",
            "--dump-dom",
            path.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    found = re.search(r'<pre id="layout">(.*?)</pre>', proc.stdout, re.S)
    assert found, proc.stdout[-2000:]
    layout = json.loads(html.unescape(found.group(1)))
    return layout.pop("dom"), layout


@pytest.mark.tools
@pytest.mark.parametrize("width", [375, 1280])  # a phone, a desktop
def test_html_page_renders_in_headless_chromium_with_every_namespace(
    report: Report, tmp_path: Path, width: int
) -> None:
    if shutil.which(CHROMIUM) is None and shutil.which("chromium") is None:
        pytest.fail("chromium not found: install Debian's chromium package (make chromium)", pytrace=False)
    page = html_page(report)
    assert not re.search(r"(src|href)=\"(https?:)?//", page)  # self-contained: no external asset
    assert "<script" not in page
    dom, layout = chromium_layout(page, tmp_path, width)
    assert layout["width"] == width
    # every namespace has a visible row, inside the page
    assert [r["ns"] for r in layout["rows"]] == [n.namespace for n in report.namespaces]
    for row in layout["rows"]:
        assert row["height"] > 0 and row["left"] >= 0 and row["right"] <= width + 0.5, (width, row)
    assert layout["wide"] == [] and layout["scroll"] <= width, layout  # nothing overflows the page width
    assert "<title>mTLS coverage report" in dom and 'id="mesh-coverage"' in dom
    for table in ("offenders", "stopped", "undetermined", "unverified-flows", "policies"):
        assert f'<table id="{table}">' in dom, table  # every flow table is rendered (and checked for width)
    sections = re.findall(r'<section class="ns" id="ns-([a-z-]+)" data-namespace="([a-z-]+)">', dom)
    assert [b for _, b in sections] == [n.namespace for n in report.namespaces]
    for ns in EXPECTED_VERDICTS:
        assert f'data-label="{ns}"' in dom  # a bar in the overview chart
    # one filled bar per namespace with traffic in the overview, and per namespace/service in its section
    fills = re.findall(r'<rect class="fill (good|warn|bad)"', dom)
    with_traffic = sum(1 for n in report.namespaces if n.coverage.current is not None)
    services_with_traffic = sum(1 for s in report.services if s.coverage.current is not None)
    assert len(fills) == 2 * with_traffic + services_with_traffic
    assert dom.count("<svg") == 1 + len(report.namespaces)


# ------------------------------------------------------------------------------------------ the gate
def coverage_drops() -> dict[str, float]:
    """Percentage points lost since last week, per namespace and for the mesh, from the generator."""
    this, last = week(this=True), week(this=False)
    out = {}
    for name, keep in [("mesh", lambda s: True)] + [
        (ns, lambda s, ns=ns: s.namespace == ns) for ns in EXPECTED_VERDICTS
    ]:
        now, before = totals(this, keep), totals(last, keep)
        if now is not None and before is not None:
            out[name] = before.pct - now.pct
    return out


def test_the_gate_fails_the_command_exactly_when_its_condition_holds(env: Env, tmp_path: Path) -> None:
    out = tmp_path / "report.md"
    proc = run_exporter(env, None, "--at", str(env.at), "--out", str(out), "--fail-on", "strict-plaintext")
    assert proc.returncode == 3, proc.stderr  # vault: STRICT, plaintext to a workload no policy excepts
    assert out.read_text().startswith("# mTLS coverage report")  # the report is written first
    assert "--fail-on strict-plaintext: plaintext no exception allows reaches STRICT vault" in proc.stderr
    # catalog and payments receive plaintext only where excepted: the calmer verdict passes the gate
    proc = run_exporter(
        env, None, "--at", str(env.at), "--output", "json", "--fail-on", "strict-plaintext",
        EXPORTER_NAMESPACES="catalog,payments",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert {n["verdict"] for n in json.loads(proc.stdout)["namespaces"]} == {"strict_excepted"}

    drops = coverage_drops()
    worst = max(drops.values())
    assert worst == pytest.approx(100 * 0.3 / 14)  # payments/ledger: 5 % of 6 req/s plaintext this week
    for points, code in ((worst - 0.01, 3), (worst + 0.01, 0)):
        proc = run_exporter(env, None, "--at", str(env.at), "--out", str(out), "--fail-on", f"coverage-drop:{points}")
        assert proc.returncode == code, (points, proc.stderr)
    proc = run_exporter(env, None, "--at", str(env.at), "--out", str(out), "--fail-on", "unverified,coverage-drop:50")
    assert proc.returncode == 3 and "unverified: destinations without sidecar: shop/inventory" in proc.stderr
    proc = run_exporter(env, None, "--at", str(env.at), "--fail-on", "strict")
    assert proc.returncode == 2 and "--fail-on" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


# ---------------------------------------------------------------------------- the outputs agree
class _Rows(HTMLParser):
    """Text of the cells of every <tr data-namespace> row of an HTML page."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, list[str]] = {}
        self._row: str | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "tr" and dict(attrs).get("data-namespace"):
            self._row = dict(attrs)["data-namespace"]
            self.rows[self._row] = []
        elif tag == "td" and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._row is not None and self._cell is not None:
            self.rows[self._row].append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "tr":
            self._row = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def test_markdown_json_html_and_datadog_agree(env: Env, intake: FakeIntake, tmp_path: Path) -> None:
    # --submit with --fail-on: the gauges and the event are sent, then the gate fails the command
    proc = run_exporter(
        env, intake, "--at", str(env.at), "--output", "json", "--submit", "--fail-on", "strict-plaintext"
    )
    assert proc.returncode == 3, proc.stderr
    submitted, gate_line = proc.stderr.index("submitted "), proc.stderr.index("exporter: --fail-on strict-plaintext")
    assert submitted < gate_line
    doc = json.loads(proc.stdout)
    md, page = tmp_path / "r.md", tmp_path / "r.html"
    for output, path in (("markdown", md), ("html", page)):
        assert run_exporter(env, None, "--at", str(env.at), "--output", output, "--out", str(path)).returncode == 0
    markdown_text = md.read_text()
    parser = _Rows()
    parser.feed(page.read_text())
    (event,) = intake.events()
    gauges = {
        (p.metric, next((t for t in p.tags if t.startswith("kube_namespace:")), "mesh")): p for p in intake.points()
    }

    for ns in doc["namespaces"]:
        name, pct = ns["namespace"], pct_text(ns["coverage_pct"])
        requests_ = count_text(ns["requests"])
        verdict = ns["verdict_text"] + (
            " (destination without sidecar: traffic unverified)" if ns["destination_without_sidecar"] else ""
        )
        md_row = next(
            line for line in markdown_text.splitlines() if line.startswith(f"| {name} | {ns['policy']['mode']}")
        )
        cells = [c.strip() for c in md_row.strip("|").split("|")]
        assert (cells[2], cells[3], cells[6]) == (pct, requests_, f"**{verdict}**"), name
        html_cells = parser.rows[name]
        assert (html_cells[2], html_cells[3]) == (pct, requests_), name
        flag = " destination without sidecar: traffic unverified" if ns["destination_without_sidecar"] else ""
        assert html_cells[6] == ns["verdict_text"] + flag, name  # the flag is a badge of its own
        assert f"- {name}: {pct}, {ns['policy']['mode']}: **{verdict}**" in event["text"], name
        coverage = gauges.get((MESH_METRIC, f"kube_namespace:{name}"))
        plaintext = gauges.get((PLAINTEXT_METRIC, f"kube_namespace:{name}"))
        if ns["coverage_pct"] is None:
            assert coverage is None and plaintext is None, name  # no traffic: nothing sent
        else:
            assert coverage is not None and plaintext is not None, name
            assert close(coverage.value, ns["coverage_pct"]) and close(plaintext.value, ns["plaintext_request_rate"])
            assert coverage.timestamp == plaintext.timestamp == env.at
    assert close(gauges[(PLAINTEXT_METRIC, "mesh")].value, doc["mesh"]["plaintext_request_rate"])
    assert close(doc["mesh"]["plaintext_request_rate"], 10.7 + TINY)
    # the title counts every verdict class, so its counts add up to the namespaces
    counts = {k: v for k, v in doc["verdict_counts"].items() if v}
    assert sum(counts.values()) == len(doc["namespaces"]) == len(EXPECTED_VERDICTS)
    for key, n in counts.items():
        assert f"{n} {Verdict[key.upper()]}" in event["title"]
    assert event["date_happened"] == env.at  # the window's end: within Datadog's 18 hours
    # one number format: the tiny rate is printed in fixed notation everywhere a human reads it
    for text in (markdown_text, page.read_text(), event["text"]):
        assert "0.00002" in text and not re.search(r"\d e[-+]?\d|\de-\d", text)
    tables_agree(doc, markdown_text, page.read_text(), event["text"])


def plain(text: str) -> str:
    """Markdown or HTML cell text without emphasis or code marks, whitespace collapsed."""
    return " ".join(text.replace("**", "").replace("`", "").replace("\\|", "|").split())


def md_table(text: str, after: str) -> list[tuple[str, ...]]:
    """The body rows of the first Markdown table after the line that starts with `after`."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(after))
    first = next(i for i in range(start, len(lines)) if lines[i].startswith("|"))
    end = next((i for i in range(first, len(lines)) if not lines[i].startswith("|")), len(lines))
    return [tuple(plain(c) for c in re.split(r"(?<!\\)\|", line)[1:-1]) for line in lines[first + 2 : end]]


class _Tables(HTMLParser):
    """Every <table> of an HTML page: its id, class and section (data-namespace), and its body rows' cell texts."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[dict[str, Any]] = []
        self._section = ""
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "section":
            self._section = a.get("data-namespace") or ""
        elif tag == "table":
            self.tables.append({"id": a.get("id"), "class": a.get("class"), "ns": self._section, "rows": []})
        elif tag == "tr" and self.tables:
            self.tables[-1]["rows"].append([])
        elif tag == "td":
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._cell is not None:
            self.tables[-1]["rows"][-1].append(plain("".join(self._cell)))
            self._cell = None
        elif tag == "section":
            self._section = ""

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)

    def rows(self, *, id: str | None = None, cls: str | None = None, ns: str | None = None) -> list[tuple[str, ...]]:
        found = [
            t for t in self.tables if (id is None or t["id"] == id) and (cls is None or t["class"] == cls)
            and (ns is None or t["ns"] == ns)
        ]  # fmt: skip
        return [tuple(r) for t in found for r in t["rows"] if r]


def tables_agree(doc: dict[str, Any], markdown_text: str, page: str, event: str) -> None:
    """Every table of the JSON document has the same rows, formatted alike, in Markdown, HTML and the event."""
    seconds = doc["window_seconds"]
    tables = _Tables()
    tables.feed(page)
    event = plain(event)

    def target(c: dict[str, Any], *, short: bool = False) -> str:
        d = c["destination"]
        app = c.get("destination_app") or ""
        note = f" (app={app})" if app and app != d["service"] else ""
        return (d["service"] if short else f"{d['namespace']}/{d['service']}") + note

    def who(c: dict[str, Any]) -> str:
        return (
            "outside the mesh (unknown)"
            if c["outside_mesh"]
            else f"{c['source_workload_namespace']}/{c['source_workload']}"
        )

    def flow(c: dict[str, Any], *, short: bool = False) -> tuple[str, ...]:
        rate = c["request_rate"]
        why = c["allowed_by"]["text"]
        return (
            target(c, short=short),
            who(c),
            rate_text(rate),
            count_text(rate * seconds),
            rate_text(c["previous_request_rate"]),
            why,
        )

    offenders = [flow(c) for c in doc["offenders"]]
    assert len(offenders) == 9 and all(row[5] for row in offenders)  # every flow names its policy
    assert md_table(markdown_text, "## Plaintext callers") == offenders
    assert tables.rows(id="offenders") == offenders
    for row in offenders:
        assert f"- {row[0]} ← {row[1]}: {row[2]} req/s (previous {row[4]}); {row[5]}" in event, row
    for ns in doc["namespaces"]:
        callers = [flow(c, short=True) for c in ns["plaintext_callers"]]
        assert tables.rows(cls="callers", ns=ns["namespace"]) == callers, ns["namespace"]
        assert [flow(c) for c in ns["plaintext_callers"]] == [
            r for r in offenders if r[0].startswith(ns["namespace"] + "/")
        ]

    unverified = [
        (target(c), who(c), rate_text(c["request_rate"]), rate_text(c["previous_request_rate"]),
         rate_text(c["previous_plaintext_request_rate"]))
        for c in doc["unverified"]
    ]  # fmt: skip
    assert unverified == [("shop/inventory", "shop/checkout", "1.90", "0", "1.90")]
    assert md_table(markdown_text, "## Destinations without sidecar") == unverified
    assert tables.rows(id="unverified-flows") == unverified
    for row in unverified:
        assert f"- {row[0]} ← {row[1]}: {row[2]} req/s unverified" in event
    for ns in doc["namespaces"]:
        assert tables.rows(cls="unverified", ns=ns["namespace"]) == [
            (c["destination"]["service"], who(c), rate_text(c["request_rate"]), rate_text(c["previous_request_rate"]))
            for c in ns["unverified"]
        ]

    stopped = [(target(c), who(c), "0", rate_text(c["previous_request_rate"])) for c in doc["resolved"]]
    assert len(stopped) == 2
    assert md_table(markdown_text, "Stopped sending plaintext") == stopped == tables.rows(id="stopped")
    undetermined = [(target(c), who(c), rate_text(c["previous_request_rate"])) for c in doc["undetermined"]]
    assert undetermined == [("shop/inventory", "outside the mesh (unknown)", "0.30")]
    assert md_table(markdown_text, "Cannot tell whether they stopped") == undetermined
    assert tables.rows(id="undetermined") == undetermined

    def figures(row: dict[str, Any]) -> tuple[str, ...]:
        previous = row["previous"]
        return (
            pct_text(row["coverage_pct"]), count_text(row["requests"]), rate_text(row["request_rate"]),
            pct_text(None if previous is None else previous["coverage_pct"]), change_text(row["change_pct_points"]),
        )  # fmt: skip

    md_services, html_services = [], []
    for ns in doc["namespaces"]:
        name = ns["namespace"]
        for s in (s for s in doc["services"] if s["namespace"] == name):
            blind = s["unverified_request_rate"]
            flag = f"destination without sidecar: traffic unverified: {rate_text(blind)} req/s" if blind else ""
            md_services.append((name, s["service"] + (f" ({flag})" if flag else ""), *figures(s)))
            html_services.append((name, " ".join(filter(None, (s["service"], flag))), *figures(s)))
        if ns["other_destinations"] is not None:
            others = f"other destinations, not migrated Services: {', '.join(ns['other_destinations']['names'])}"
            md_services.append((name, others, *figures(ns["other_destinations"])))
            html_services.append(md_services[-1])
    assert len(md_services) == len(doc["services"]) + 1  # legacy's Others row
    assert md_table(markdown_text, "## Services by namespace") == md_services
    got = [
        (ns["namespace"], *row) for ns in doc["namespaces"] for row in tables.rows(cls="services", ns=ns["namespace"])
    ]
    assert got == html_services

    timeline = [
        (p["policy"], p["scope"], p["mode"], p["created"], p["last_change"],
         PolicyTimeline(p["policy"], p["scope"], Mode(p["mode"]), p["created"], p["last_change"],
                        p["created_in_window"], p["changed_in_window"], p["created_after_window"],
                        p["changed_after_window"]).when)
        for p in doc["policies"]
    ]  # fmt: skip
    assert len(timeline) == 15 and sum(1 for row in timeline if row[5] != "no change") == 3
    assert md_table(markdown_text, "## Policies") == timeline == tables.rows(id="policies")


# --------------------------------------------------------------------- what the destination cannot see
def promql_vector(env: Env, query: str, labels: Sequence[str]) -> dict[tuple[str, ...], float]:
    """Prometheus's own answer to hand-written PromQL, keyed by `labels`."""
    answer = requests.get(f"{env.prom_url}/api/v1/query", params={"query": query, "time": env.at}, timeout=10)
    answer.raise_for_status()
    return {
        tuple(r["metric"].get(label, "") for label in labels): float(r["value"][1])
        for r in answer.json()["data"]["result"]
    }


def test_a_destination_without_sidecar_is_named_with_its_callers(env: Env, report: Report) -> None:
    # by hand: what each caller's proxy says it sent to shop/inventory this week, and what inventory itself reports
    labels = ("source_workload_namespace", "source_workload")
    sent = promql_vector(
        env,
        'sum by (source_workload_namespace, source_workload) (rate(istio_requests_total{reporter="source",'
        'destination_service_namespace="shop",destination_service_name="inventory"}[7d]))',
        labels,
    )
    received = promql_vector(
        env,
        'sum(rate(istio_requests_total{reporter="destination",destination_service_name="inventory"}[7d]))',
        (),
    )
    assert sent == {("shop", "checkout"): pytest.approx(1.9)} and received == {(): 0.0}
    assert [(str(c.destination), c.name) for c in report.unverified] == [("shop/inventory", "shop/checkout")]
    (flow,) = report.unverified
    assert close(flow.rate, sent[("shop", "checkout")]) and close(flow.previous_plaintext, 1.9)
    inventory = next(s for s in report.services if s.service == ServiceRef("shop", "inventory"))
    assert inventory.coverage.current is None and close(inventory.unverified_rate, 1.9)
    shop = next(n for n in report.namespaces if n.namespace == "shop")
    assert shop.verdict is Verdict.READY and [c.name for c in shop.unverified] == ["shop/checkout"]
    # no other destination is blind: every other source-side flow has a destination-side counterpart
    assert {str(c.destination) for c in report.unverified} == {"shop/inventory"}


def test_every_table_adds_up(env: Env, report: Report) -> None:
    by_ns = promql_vector(
        env,
        'sum by (destination_service_namespace) (rate(istio_requests_total{reporter="destination"}[7d]))',
        ("destination_service_namespace",),
    )
    mesh = report.mesh.current
    assert mesh is not None and close(mesh.rate, sum(by_ns.values()))
    assert close(sum(n.coverage.current.rate for n in report.namespaces if n.coverage.current), mesh.rate)
    assert close(sum(n.coverage.current.plaintext for n in report.namespaces if n.coverage.current), mesh.plaintext)
    for ns in report.namespaces:
        rows = [s.coverage.current for s in report.services if s.service.namespace == ns.namespace]
        if ns.others is not None:
            rows.append(ns.others.coverage.current)
        got = [r for r in rows if r is not None]
        if ns.coverage.current is None:
            assert not got, ns.namespace
            continue
        assert math.isclose(sum(r.requests for r in got), ns.coverage.current.requests, rel_tol=1e-9), ns.namespace
        assert math.isclose(sum(r.plaintext for r in got), ns.coverage.current.plaintext, abs_tol=1e-6), ns.namespace
        assert close(ns.coverage.current.rate, by_ns[(ns.namespace,)]), ns.namespace
    legacy = next(n for n in report.namespaces if n.namespace == "legacy")
    assert legacy.others is not None and legacy.others.names == ("ftp-bridge", "report-db")
    assert close(legacy.others.coverage.current.rate, 1.5)  # type: ignore[union-attr]
    assert all(n.others is None for n in report.namespaces if n.namespace != "legacy")


def test_each_plaintext_flow_names_the_policy_that_allows_it(env: Env, report: Report) -> None:
    why = {(str(c.destination), c.name): c.allowance for c in report.offenders}
    assert all(a is not None for a in why.values())
    expected = {
        ("catalog/search", "frontend/web"): (Evidence.ALLOWED, "catalog/search-legacy", True),
        ("payments/ledger", "payments/api"): (Evidence.MAY_PORT, "payments/ledger-metrics", True),
        ("catalog/products", "frontend/web"): (Evidence.MAY_PORT, "catalog/products-metrics", True),
        ("vault/secrets", "payments/api"): (Evidence.NONE, "vault/default", False),
        ("legacy/mainframe-gw", "shop/checkout"): (Evidence.ALLOWED, "legacy/default", False),
        ("legacy/mainframe-gw", "outside the mesh (unknown)"): (Evidence.ALLOWED, "legacy/default", False),
        ("legacy/ftp-bridge", "outside the mesh (unknown)"): (Evidence.ALLOWED, "legacy/default", False),
        ("lab/sandbox", "lab/notebook"): (Evidence.ALLOWED, "lab/default", False),
        ("lab/sandbox", "lab/cron"): (Evidence.ALLOWED, "lab/default", False),
    }
    got = {k: (a.evidence, a.policy, a.exception) for k, a in why.items() if a is not None}
    assert got == expected
    ledger = why[("payments/ledger", "payments/api")]
    assert ledger is not None and ledger.text.startswith("may be allowed by a port exception")
    # a policy created or changed during the window is named as such next to the flow it decides
    vault, search = why[("vault/secrets", "payments/api")], why[("catalog/search", "frontend/web")]
    assert vault is not None and f"vault/default created during the window ({iso(env.at - 3 * DAY)})" in vault.text
    assert search is not None and "catalog/search-legacy changed during the window" in search.text
    assert ledger is not None and "during the window" not in ledger.text


def test_policies_carry_their_creation_and_last_change(env: Env, report: Report) -> None:
    timeline = {p.ref: p for p in report.policies}
    assert set(timeline) == {f"{o['metadata']['namespace']}/{o['metadata']['name']}" for o in policies_at(env.at)}
    vault = timeline["vault/default"]
    assert (vault.created, vault.created_in_window, vault.scope) == (iso(env.at - 3 * DAY), True, "namespace-wide")
    search = timeline["catalog/search-legacy"]
    assert (search.created, search.changed) == ("2025-03-02T00:00:00Z", iso(env.at - 2 * DAY))
    assert search.changed_in_window and not search.created_in_window and search.scope == "workloads app=search"
    assert timeline[f"{ROOT}/default"].scope == "mesh-wide"
    quiet = [p for p in report.policies if not p.changed_in_window]
    assert len(quiet) == len(timeline) - 3  # vault's two policies, catalog's exception


def test_a_historical_report_event_is_posted_now_and_names_its_window(env: Env, intake: FakeIntake) -> None:
    at = env.at - DAY  # more than Datadog's 18 hours ago: date_happened would be refused
    proc = run_exporter(env, intake, "--at", str(at), "--output", "json", "--submit")
    assert proc.returncode == 0, proc.stderr
    (event,) = intake.events()
    assert "date_happened" not in event  # Datadog stamps it with the posting time
    assert event["text"].startswith(f"%%% \nReport for the window 7d from {iso(at - WEEK)} to {iso(at)}")
    assert {p.timestamp for p in intake.points()} == {at}  # the gauges still carry the window's end


MTLS, PLAIN = ',connection_security_policy="mutual_tls"', ',connection_security_policy!="mutual_tls"'
SVC = ("destination_service_namespace", "destination_service_name")


def dest(matchers: str = "", offset: str = "") -> str:
    """Destination-reported requests over the 7-day window, with extra `matchers` (`,name="value"`)."""
    return 'istio_requests_total{reporter="destination"' + matchers + "}[7d]" + offset


def scalar(env: Env, query: str) -> float:
    (value,) = promql_vector(env, f"sum({query})", ()).values()
    return value


def test_the_remaining_figures_agree_with_hand_written_promql(env: Env, report: Report) -> None:
    """Mesh and service coverage, caller rates in both windows, the stopped callers, the Others row and the
    unverified flow's previous rates, each against Prometheus's own answer to PromQL written out here."""
    for offset, pick in (("", lambda t: t.current), (" offset 7d", lambda t: t.previous)):
        mesh = 100 * scalar(env, f"rate({dest(MTLS, offset)})") / scalar(env, f"rate({dest('', offset)})")
        assert close(pick(report.mesh).pct, mesh), offset
        by, every = ", ".join(SVC), f"sum by ({', '.join(SVC)}) (rate({dest('', offset)}))"
        mtls = f"sum by ({by}) (rate({dest(MTLS, offset)}))"
        answer = promql_vector(env, f"100 * ({mtls} or 0 * {every}) / {every}", SVC)  # lab: no mTLS series
        by_service = {k: v for k, v in answer.items() if not math.isnan(v)}  # 0/0: a series with no requests
        ours = {(s.service.namespace, s.service.name): pick(s.coverage) for s in report.services}
        assert {k for k, c in ours.items() if c is not None} == set(by_service) & set(ours), offset
        for key in set(by_service) & set(ours):
            assert close(ours[key].pct, by_service[key]), (offset, key)  # type: ignore[union-attr]

    flow = (*SVC, "destination_app", "source_workload", "source_workload_namespace")
    now, before = (
        promql_vector(env, f"sum by ({', '.join(flow)}) (rate({dest(PLAIN, offset)}))", flow)
        for offset in ("", " offset 7d")
    )
    got = {(c.destination.namespace, c.destination.name, c.app, c.workload, c.namespace): c for c in report.offenders}
    assert set(got) == {k for k, v in now.items() if v > 0}
    for key, caller in got.items():
        assert close(caller.rate, now[key]) and close(caller.previous_rate, before.get(key) or None), key
    # stopped: plaintext last week, none this week, and the caller's proxy sends nothing to the destination; a
    # caller from outside the mesh has no proxy: stopped when the destination still reports, else nobody can tell
    sending = promql_vector(
        env,
        'sum by (destination_service_name, source_workload) (rate(istio_requests_total{reporter="source"}[7d]))',
        ("destination_service_name", "source_workload"),
    )
    reporting = promql_vector(env, f"sum by ({', '.join(SVC)}) (rate({dest()}))", SVC)
    candidates = {k for k, v in before.items() if v > 0 and now.get(k, 0) == 0}
    outside_mesh = {k for k in candidates if k[3] == "unknown"}
    stopped = {k for k in candidates - outside_mesh if sending.get((k[1], k[3]), 0) == 0}
    stopped |= {k for k in outside_mesh if reporting.get(k[:2], 0) > 0}
    assert stopped == {
        ("shop", "checkout", "checkout", "exporter", "batch"),
        ("archive", "old-api", "old-api", "reports", "archive"),
    }
    unknown = {k for k in outside_mesh if reporting.get(k[:2], 0) == 0}
    assert unknown == {("shop", "inventory", "inventory", "unknown", "unknown")}
    for listed, want in ((report.resolved, stopped), (report.undetermined, unknown)):
        got = {(c.destination.namespace, c.destination.name, c.app, c.workload, c.namespace): c for c in listed}
        assert set(got) == want
        for key, caller in got.items():
            assert caller.rate == 0 and close(caller.previous_rate, before[key]), key

    # the Others row of legacy: every destination there but its one migrated Service, mainframe-gw
    others = ',destination_service_namespace="legacy",destination_service_name!="mainframe-gw"'
    legacy = next(n for n in report.namespaces if n.namespace == "legacy")
    assert legacy.others is not None
    for offset, row in (("", legacy.others.coverage.current), (" offset 7d", legacy.others.coverage.previous)):
        assert row is not None and close(row.rate, scalar(env, f"rate({dest(others, offset)})")), offset
        assert close(row.plaintext_rate, scalar(env, f"rate({dest(others + PLAIN, offset)})")), offset

    # the unverified flow's previous window: inventory still reported then, so nothing was unverified, and
    # what it reported as plaintext from that caller is the "previous plaintext" column
    inventory = ',destination_service_name="inventory"'
    sent_before = 'sum(rate(istio_requests_total{reporter="source"' + inventory + "}[7d] offset 7d))"
    reported_before = f"sum(rate({dest(inventory, ' offset 7d')}))"
    assert promql_vector(env, f"{sent_before} unless on () ({reported_before} > 0)", ()) == {}
    (blind,) = report.unverified
    assert blind.previous_rate is None
    from_caller = inventory + ',source_workload="checkout"' + PLAIN
    assert close(blind.previous_plaintext, scalar(env, f"rate({dest(from_caller, ' offset 7d')})"))


def test_one_service_fronting_two_apps_is_judged_per_app(make_prometheus: PrometheusFactory, tmp_path: Path) -> None:
    """cat/search serves app=search-legacy (excepted) and app=search-v2 (not) alike: each gets 1 req/s of
    plaintext, tied to its own app's policy, and the namespace is STRICT with plaintext nothing excepts."""
    at = int(math.floor(time.time() / 60) * 60)
    versions = (Version("v1", 0.5, app="search-legacy"), Version("v2", 0.5, app="search-v2"))
    mesh = (Service("cat", "search", (Caller("web", "fe", 4.0, 0.5),), versions=versions),)
    server = make_prometheus([Phase(at - 3 * 3600, mesh)], end=at, step=60.0)
    with FakeKubeAPI() as kube:
        for manifest in kube_service_manifests(mesh):
            kube.add(manifest)
        kube.add(pa("cat", "default", "STRICT", "2025-01-01T00:00:00Z"))
        kube.add(
            pa(
                "cat",
                "legacy",
                "PERMISSIVE",
                "2025-01-02T00:00:00Z",
                selector={"matchLabels": {"app": "search-legacy"}},
            )
        )
        kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig")
        report = generate(Settings(prometheus_url=server.url, kubeconfig=str(kubeconfig)), at=at, window="1h")
    by_app = promql_vector(
        Env(server.url, at, kube, kubeconfig),
        'sum by (destination_app) (rate(istio_requests_total{reporter="destination",'
        'connection_security_policy!="mutual_tls"}[1h]))',
        ("destination_app",),
    )
    assert by_app == {("search-legacy",): pytest.approx(1.0), ("search-v2",): pytest.approx(1.0)}
    got = {c.app: c for c in report.offenders}
    assert set(got) == {"search-legacy", "search-v2"}
    for app, caller in got.items():
        assert close(caller.rate, by_app[(app,)]) and close(caller.previous_rate, by_app[(app,)]), app
    assert got["search-legacy"].allowance is not None and got["search-legacy"].allowance.policy == "cat/legacy"
    assert got["search-v2"].allowance is not None and got["search-v2"].allowance.evidence is Evidence.NONE
    (cat,) = report.namespaces
    assert cat.verdict is Verdict.STRICT_PLAINTEXT
    assert [c.target for c in report.offenders] == ["cat/search (app=search-legacy)", "cat/search (app=search-v2)"]


def test_a_caller_is_stopped_only_when_its_own_proxy_agrees(make_prometheus: PrometheusFactory, tmp_path: Path) -> None:
    """Partial injection: shop/app still reports web's mTLS traffic, but gw (in the mesh) now reaches only its
    pods without a sidecar: its 1 req/s shows on its own side only. cron really stopped. gw is unverified, cron
    stopped; the report makes a seventh request for them (and six when nobody stopped)."""
    at = int(math.floor(time.time() / 60) * 60)
    web, gw, cron = Caller("web", "fe", 10.0), Caller("gw", "leg", 1.0, 0.0), Caller("cron", "leg", 0.5, 0.0)
    before = (Service("shop", "app", (web, gw, cron)),)
    now = (Service("shop", "app", (web, replace(gw, unseen=True), replace(cron, rps=0.0))),)
    server = make_prometheus([Phase(at - 3 * 3600, before), Phase(at - 3600, now)], end=at, step=60.0)
    with FakeKubeAPI() as kube:
        for manifest in kube_service_manifests(now):
            kube.add(manifest)
        kube.add(pa("shop", "default", "PERMISSIVE", "2025-01-01T00:00:00Z"))
        kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig")
        settings = Settings(prometheus_url=server.url, kubeconfig=str(kubeconfig))
        report = generate(settings, at=at, window="1h")
        earlier = generate(settings, at=at - 3600, window="1h")  # nobody stopped in that window
        e = Env(server.url, at, kube, kubeconfig)
    by = ("source_workload",)
    sent = promql_vector(e, 'sum by (source_workload) (rate(istio_requests_total{reporter="source"}[1h]))', by)
    seen = promql_vector(e, 'sum by (source_workload) (rate(istio_requests_total{reporter="destination"}[1h]))', by)
    was = promql_vector(
        e,
        'sum by (source_workload) (rate(istio_requests_total{reporter="destination",'
        'connection_security_policy!="mutual_tls"}[1h] offset 1h))',
        by,
    )
    assert sent == {("web",): pytest.approx(10.0), ("gw",): pytest.approx(1.0), ("cron",): 0.0}
    assert seen == {("web",): pytest.approx(10.0), ("gw",): 0.0, ("cron",): 0.0}  # the destination never sees gw
    assert [(c.name, c.previous_rate) for c in report.resolved] == [("leg/cron", pytest.approx(was[("cron",)]))]
    assert report.offenders == () and report.undetermined == ()
    (blind,) = report.unverified
    assert (blind.target, blind.name) == ("shop/app", "leg/gw")
    assert close(blind.rate, sent[("gw",)]) and close(blind.previous_plaintext, was[("gw",)])
    (shop,) = report.namespaces
    assert shop.unverified == (blind,) and shop.verdict is Verdict.READY  # what the destination sees is clean
    assert report.promql_requests == 7 and earlier.promql_requests == 6
    assert earlier.resolved == () and earlier.unverified == ()


def test_an_exception_created_after_a_historical_window_does_not_pass_the_gate(
    make_prometheus: PrometheusFactory, tmp_path: Path
) -> None:
    """vault is STRICT; its exception for app=s is created half an hour ago. The window of an hour ago ended
    before it: its 0.5 req/s of plaintext to s is allowed by nothing, and the gate fails; the current window's
    end comes after it: the plaintext goes to an excepted workload, and the gate passes."""
    at = int(math.floor(time.time() / 60) * 60)
    mesh = (Service("vault", "s", (Caller("api", "pay", 1.0, 0.5),)),)
    server = make_prometheus([Phase(at - 3 * 3600, mesh)], end=at, step=60.0)
    with FakeKubeAPI() as kube:
        kube.add(pa("vault", "default", "STRICT", "2025-01-01T00:00:00Z"))
        kube.add(pa("vault", "exc", "PERMISSIVE", iso(at - 1800), selector={"matchLabels": {"app": "s"}}))
        env = Env(server.url, at, kube, kube.write_kubeconfig(tmp_path / "kubeconfig"))
        runs = {
            when: run_exporter(
                env, None, "--at", str(when), "--window", "1h", "--output", "json", "--fail-on", "strict-plaintext"
            )
            for when in (at - 3600, at)
        }
    historical, current = (json.loads(runs[when].stdout) for when in (at - 3600, at))
    (flow,) = historical["offenders"]
    assert flow["request_rate"] == pytest.approx(0.5) and flow["allowed_by"]["evidence"] == "none"
    assert flow["allowed_by"]["text"].endswith(
        f"vault/exc created after the window ({iso(at - 1800)}): it did not apply to this traffic"
    )
    assert [n["verdict"] for n in historical["namespaces"]] == ["strict_plaintext"]
    assert runs[at - 3600].returncode == 3 and "strict-plaintext" in runs[at - 3600].stderr
    assert [n["verdict"] for n in current["namespaces"]] == ["strict_excepted"]
    assert current["offenders"][0]["allowed_by"]["policy"] == "vault/exc" and runs[at].returncode == 0
