"""The daemon: cycles, discovery that survives a Kubernetes outage, health endpoints, self-metrics,
and a graceful SIGTERM, with the real clients against local servers."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from exporter.cli import clients
from exporter.config import Settings
from exporter.export.daemon import Daemon
from sandbox.intake import FakeIntake
from sandbox.kubeapi import FakeKubeAPI
from tests.support.procs import API_KEY, exporter_env, free_port
from tests.support.prom import DemoProm


@pytest.fixture
def intake() -> Iterator[FakeIntake]:
    with FakeIntake(api_key=API_KEY) as server:
        yield server


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in /metrics")


def test_cycles_health_metrics_and_discovery_outage(
    demo_prom: DemoProm, demo_kube: tuple[FakeKubeAPI, Path], intake: FakeIntake
) -> None:
    api, kubeconfig = demo_kube
    settings = Settings(
        prometheus_url=demo_prom.url, datadog_url=intake.url, dd_api_key=API_KEY, kubeconfig=str(kubeconfig),
        interval_seconds=30, http_port=0,
    )  # fmt: skip
    clock = Clock(demo_prom.at)
    daemon = Daemon(
        settings,
        discovery=clients.discovery(settings),
        prom=clients.prometheus(settings),
        sink=clients.datadog(settings),
        clock=clock,
    )
    port = daemon.serve_http(0)
    base = f"http://127.0.0.1:{port}"
    try:
        assert requests.get(f"{base}/healthz", timeout=5).status_code == 200
        assert requests.get(f"{base}/readyz", timeout=5).status_code == 503  # no cycle yet

        daemon.cycle()
        with_traffic = [s for s in demo_prom.services if s.migrated and any(c.rps for c in s.callers)]
        assert len(intake.points()) == 4 * len(with_traffic)
        assert {p.timestamp for p in intake.points()} == {int(demo_prom.at)}
        assert requests.get(f"{base}/readyz", timeout=5).status_code == 200

        # Kubernetes goes away: the last good list is kept, the error counted, cycles go on
        api.set_unavailable(True)
        daemon.refresh_discovery()
        assert daemon.services is not None and len(daemon.services) == sum(s.migrated for s in demo_prom.services)
        clock.now += 30
        daemon.cycle()
        assert 2 <= len(intake.requests) <= 4  # each cycle: one or two hand-overs, one request each

        text = requests.get(f"{base}/metrics", timeout=5).text
        assert metric(text, 'mesh_exporter_errors_total{stage="discovery"}') == 1
        assert metric(text, "mesh_exporter_points_submitted_total") == 2 * 4 * len(with_traffic)
        assert metric(text, "mesh_exporter_promql_requests_total") == 8
        assert metric(text, "mesh_exporter_datadog_requests_total") == len(intake.requests)
        assert metric(text, "mesh_exporter_services_discovered") == sum(s.migrated for s in demo_prom.services)
        assert metric(text, "mesh_exporter_discovery_age_seconds") == 30
        # the last Kubernetes call failed, the last Prometheus and Datadog calls succeeded
        assert metric(text, 'mesh_exporter_upstream_up{upstream="kubernetes"}') == 0
        assert metric(text, 'mesh_exporter_upstream_up{upstream="prometheus"}') == 1
        assert metric(text, 'mesh_exporter_upstream_up{upstream="datadog"}') == 1
        assert metric(text, "mesh_exporter_backlog_oldest_point_age_seconds") == 0
        assert API_KEY not in text

        # no successful cycle for more than three intervals: not ready
        clock.now += 3 * 30 + 1
        assert requests.get(f"{base}/readyz", timeout=5).status_code == 503
    finally:
        daemon.stop()


def test_run_exits_0_on_sigterm_after_submitting(
    demo_prom: DemoProm, demo_kube: tuple[FakeKubeAPI, Path], intake: FakeIntake
) -> None:
    port = free_port()
    env = exporter_env(demo_prom, demo_kube[1], intake, EXPORTER_HTTP_PORT=str(port), EXPORTER_INTERVAL_SECONDS="1")
    proc = subprocess.Popen([sys.executable, "-m", "exporter", "run"], env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if requests.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            time.sleep(0.2)
        else:
            raise AssertionError("never ready")
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr
    events = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    names = [e["event"] for e in events]
    assert names[0] == "starting" and names[-1] == "stopped" and "cycle" in names
    cycle = next(e for e in events if e["event"] == "cycle")
    assert cycle["promql_requests"] == 4 and cycle["datadog_requests"] in (1, 2)  # one per hand-over
    assert set(cycle["durations_s"]) == {"query", "submit"}
    assert events[0]["settings"]["dd_api_key"] == "<set>" and API_KEY not in stderr
    assert intake.points()


def test_a_cycle_sends_most_points_while_the_p99_query_is_still_unanswered(
    demo_prom: DemoProm, demo_kube: tuple[FakeKubeAPI, Path], intake: FakeIntake
) -> None:
    """The pipelined cycle, end to end: Prometheus (behind a proxy) holds the p99 query back until the
    intake has received a request, so the test passes only if points were sent before it answered."""
    from sandbox.proxy import FaultProxy, ProxyRequest

    sent_before_p99 = threading.Event()

    def hold_p99(request: ProxyRequest) -> None:
        if "histogram_quantile" in request.query.get("query", ""):
            for _ in range(1000):  # 10 s at most; then the p99 answers anyway and the assertion fails
                if intake.requests:
                    sent_before_p99.set()
                    break
                time.sleep(0.01)

    api, kubeconfig = demo_kube
    with FaultProxy(demo_prom.url) as proxy:
        proxy.set_fault(hold_p99)
        settings = Settings(
            prometheus_url=proxy.url, datadog_url=intake.url, dd_api_key=API_KEY, kubeconfig=str(kubeconfig),
            interval_seconds=30, http_port=0,
        )  # fmt: skip
        daemon = Daemon(
            settings,
            discovery=clients.discovery(settings),
            prom=clients.prometheus(settings),
            sink=clients.datadog(settings),
            clock=Clock(demo_prom.at),
        )
        try:
            daemon.refresh_discovery()  # the daemon's discovery job: a cycle reads the list it keeps
            kube_calls = len(api.requests)
            daemon.cycle()
        finally:
            daemon.stop()
    assert sent_before_p99.is_set()
    assert len(api.requests) == kube_calls  # no discovery inside the cycle
    with_traffic = [s for s in demo_prom.services if s.migrated and any(c.rps for c in s.callers)]
    first, *rest = [r.json["series"] for r in intake.requests]
    assert rest and {s["metric"] for s in first} == {
        "istio.service.request_rate", "istio.service.success_rate_pct", "istio.service.mtls_coverage_pct"
    }  # fmt: skip
    assert {s["metric"] for r in rest for s in r} == {"istio.service.p99_latency_ms"}
    assert len(intake.points()) == 4 * len(with_traffic)
