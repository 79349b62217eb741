"""`exporter canary analyze` against a real Prometheus over generated canary/stable subsets.

Three services in one mesh: a clearly worse canary (5 % errors, slow), an equal one, and one with too
little traffic. Expected counts and p99s are computed from the generator's parameters (rates × window
seconds; histogram_quantile's linear interpolation inside the bucket holding the 99th percentile).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from typing import Any

import pytest

from exporter.canary.analysis import FAIL, INCONCLUSIVE, PASS
from exporter.canary.measure import measure_subsets, run_analysis
from exporter.model import ServiceRef
from exporter.query.prometheus import PrometheusClient
from sandbox.meshsim import LATENCY_SLOW, Phase, Service
from tests.support.canary_mesh import QUICK_P99, SLOW_P99, equal, sparse, worse
from tests.support.prom import PrometheusFactory

STEP = 30.0
WINDOW_S = 300
WORSE, EQUAL, SPARSE = worse("reviews"), equal("ratings"), sparse("details")
CANARY_MESH = (WORSE, EQUAL, SPARSE)


def expected_counts(service: Service, version: str) -> tuple[int, int]:
    """(requests, 5xx) in the window, from the generator's parameters."""
    v = next(v for v in service.versions if v.name == version)
    requests = sum(c.rps for c in service.callers) * v.share * WINDOW_S
    return round(requests), round(requests * v.error_rate)


@pytest.fixture(scope="module")
def prom(make_prometheus: PrometheusFactory) -> tuple[str, float]:
    at = math.floor(time.time() / STEP) * STEP
    server = make_prometheus((Phase(at - 20 * 60, CANARY_MESH),), end=at, step=STEP)
    return server.url, at


def analyze_cli(url: str, *args: str) -> tuple[int, dict[str, Any], str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EXPORTER_", "DD_"))}
    env["EXPORTER_PROMETHEUS_URL"] = url
    proc = subprocess.run(
        [sys.executable, "-m", "exporter", "canary", "analyze", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    doc = json.loads(proc.stdout) if "--output" in args and proc.stdout else {}
    return proc.returncode, doc, proc.stdout + proc.stderr


@pytest.mark.parametrize("service", CANARY_MESH, ids=lambda s: s.name)
def test_subset_figures_match_the_generator(prom: tuple[str, float], service: Service) -> None:
    url, at = prom
    subsets = measure_subsets(
        PrometheusClient(url), ServiceRef(service.namespace, service.name), ("canary", "stable"), at=at, window="5m"
    )
    for name in ("canary", "stable"):
        requests, errors = expected_counts(service, name)
        assert (subsets[name].requests, subsets[name].errors) == (requests, errors), name
        latency = next(v.latency for v in service.versions if v.name == name)
        assert subsets[name].p99_ms == pytest.approx(SLOW_P99 if latency is LATENCY_SLOW else QUICK_P99, rel=1e-9)
        # the histogram's +Inf bucket counts every request; the le="100" bucket the generator's share
        assert subsets[name].buckets[-1] == (math.inf, pytest.approx(requests, rel=1e-9))
        share_100 = dict(latency.cumulative())[100.0]
        assert dict(subsets[name].buckets)[100.0] == pytest.approx(requests * share_100, rel=1e-9)


def test_clearly_worse_canary_fails_with_exit_1(prom: tuple[str, float]) -> None:
    url, at = prom
    code, doc, out = analyze_cli(url, "--namespace", "shop", "--service", "reviews", "--canary", "canary",
                                 "--stable", "stable", "--at", str(int(at)), "--output", "json")  # fmt: skip
    assert code == 1, out
    assert doc["verdict"] == FAIL
    assert doc["canary"] == {"version": "canary", "requests": 1200, "errors": 60, "success_rate_pct": 95.0,
                             "p99_latency_ms": pytest.approx(SLOW_P99)}  # fmt: skip
    assert (doc["stable"]["requests"], doc["stable"]["errors"]) == (10800, 5)  # 40·0.9·300, round(5.4)
    results = {c["name"]: c["result"] for c in doc["checks"]}
    assert results == {"canary_requests": PASS, "stable_requests": PASS, "success_rate": FAIL,
                       "p99_latency": FAIL, "error_rate_vs_stable": FAIL, "p99_vs_stable": FAIL}  # fmt: skip
    assert all(c["test"]["p_value"] < 1e-6 for c in doc["checks"] if c["result"] == FAIL)
    assert doc["evaluated_at"] == int(at) and doc["window"] == "5m"


def test_equal_canary_passes_with_exit_0(prom: tuple[str, float]) -> None:
    url, at = prom
    code, doc, out = analyze_cli(url, "--namespace", "shop", "--service", "ratings", "--canary", "canary",
                                 "--stable", "stable", "--at", str(int(at)), "--output", "json")  # fmt: skip
    assert code == 0, out
    assert doc["verdict"] == PASS
    assert doc["canary"]["p99_latency_ms"] == pytest.approx(doc["stable"]["p99_latency_ms"]) == pytest.approx(75.0)
    vs_stable = next(c for c in doc["checks"] if c["name"] == "p99_vs_stable")
    assert vs_stable["observed"] == pytest.approx(1.0)
    assert vs_stable["test"]["p_value"] > 0.4  # identical distributions: no shift at all


def test_too_little_traffic_is_inconclusive_with_exit_3_even_when_it_fails_badly(prom: tuple[str, float]) -> None:
    url, at = prom
    code, doc, out = analyze_cli(url, "--namespace", "shop", "--service", "details", "--canary", "canary",
                                 "--stable", "stable", "--at", str(int(at)), "--output", "json")  # fmt: skip
    assert code == 3, out
    assert doc["verdict"] == INCONCLUSIVE
    assert doc["canary"]["requests"] == 30  # 2 rps · 5 % · 300 s
    assert any("fewer than the 100 needed" in r for r in doc["reasons"])


def test_no_data_is_inconclusive_never_pass_or_fail(prom: tuple[str, float]) -> None:
    url, at = prom
    verdict = run_analysis(
        PrometheusClient(url), ServiceRef("shop", "reviews"), canary="v9", stable="stable", at=at, window="5m"
    )
    assert verdict.result == INCONCLUSIVE
    assert verdict.canary.requests == 0
    # before the data begins, neither subset has any
    early = run_analysis(
        PrometheusClient(url),
        ServiceRef("shop", "reviews"),
        canary="canary",
        stable="stable",
        at=at - 3600,
        window="5m",
    )
    assert early.result == INCONCLUSIVE and early.stable.requests == 0


def test_workload_label_splits_the_same_traffic(prom: tuple[str, float]) -> None:
    url, at = prom
    by_workload = run_analysis(PrometheusClient(url), ServiceRef("shop", "reviews"), canary="reviews-canary",
                               stable="reviews-stable", at=at, window="5m", label="destination_workload")  # fmt: skip
    assert (by_workload.canary.requests, by_workload.canary.errors) == expected_counts(WORSE, "canary")
    assert by_workload.result == FAIL


def test_text_output_and_bad_flags(prom: tuple[str, float]) -> None:
    url, at = prom
    code, _, out = analyze_cli(url, "--namespace", "shop", "--service", "reviews", "--canary", "canary",
                               "--stable", "stable", "--at", str(int(at)))  # fmt: skip
    assert code == 1
    assert "verdict: FAIL" in out and "fisher_exact" in out and "1,200" in out
    code, _, out = analyze_cli(url, "--namespace", "shop", "--service", "reviews", "--canary", "canary",
                               "--stable", "stable", "--confidence", "1.5")  # fmt: skip
    assert code == 2
    assert out.strip().splitlines() == ["exporter: config error: --confidence: must be within (0, 1), e.g. 0.95"]


def test_a_failed_query_is_exit_1_never_a_verdict() -> None:
    code, _, out = analyze_cli("http://127.0.0.1:9", "--namespace", "shop", "--service", "reviews",
                               "--canary", "canary", "--stable", "stable", "--output", "json")  # fmt: skip
    assert code == 1
    assert "cannot reach Prometheus at http://127.0.0.1:9" in out
    assert '"verdict"' not in out
