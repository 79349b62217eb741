"""`exporter canary analyze` against a real Prometheus over generated canary/stable subsets.

Three services in one mesh: a clearly worse canary (5 % errors, slow), an equal one, and one with too
little traffic. Expected counts and p99s are computed from the generator's parameters (rates × window
seconds; histogram_quantile's linear interpolation inside the bucket holding the 99th percentile).
"""

from __future__ import annotations

import math
import time

import pytest

from exporter.canary.analysis import FAIL, INCONCLUSIVE, PASS
from exporter.canary.measure import measure_subsets, run_analysis
from exporter.model import ServiceRef
from exporter.query.prometheus import PrometheusClient
from sandbox.meshsim import LATENCY_SLOW, Caller, Phase, Service, Version
from tests.support.canary_api import analyze_cli
from tests.support.canary_mesh import QUICK, QUICK_P99, SLOW_P99, equal, expected_counts, sparse, worse
from tests.support.prom import PrometheusFactory

STEP = 30.0
WINDOW_S = 300
WORSE, EQUAL, SPARSE = worse("reviews"), equal("ratings"), sparse("details")
CANARY_MESH = (WORSE, EQUAL, SPARSE)
WEB = Caller("web", "frontend", 10.0)
RETIRED = Service("shop", "retired", (WEB,), (Version("stable", share=0.5, latency=QUICK),
                                              Version("canary", share=0.5, latency=QUICK)))  # fmt: skip
"""Its canary served traffic until 8 minutes before the instant, then none: seen, but 0 requests in the window."""


@pytest.fixture(scope="module")
def prom(make_prometheus: PrometheusFactory) -> tuple[str, float]:
    at = math.floor(time.time() / STEP) * STEP
    retired = Service("shop", "retired", (WEB,), (Version("stable", latency=QUICK),))
    server = make_prometheus(
        (Phase(at - 20 * 60, (*CANARY_MESH, RETIRED)), Phase(at - 8 * 60, (*CANARY_MESH, retired))), end=at, step=STEP
    )
    return server.url, at


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
    assert doc["canary"] == {"version": "canary", "seen": True, "requests": 1200, "errors": 60,
                             "success_rate_pct": 95.0, "p99_latency_ms": pytest.approx(SLOW_P99)}  # fmt: skip
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


def test_a_failed_query_is_exit_4_could_not_analyse_never_a_verdict() -> None:
    code, _, out = analyze_cli("http://127.0.0.1:9", "--namespace", "shop", "--service", "reviews",
                               "--canary", "canary", "--stable", "stable", "--output", "json")  # fmt: skip
    assert code == 4
    assert (
        out.strip()
        .splitlines()[-1]
        .startswith("exporter: could not analyse (no verdict): cannot reach Prometheus at http://127.0.0.1:9")
    )
    assert '"verdict"' not in out


def test_a_version_never_seen_is_told_apart_from_zero_requests(prom: tuple[str, float]) -> None:
    url, at = prom
    code, typo, out = analyze_cli(url, "--namespace=shop", "--service=reviews", "--canary=canray", "--stable=stable",
                                  "--at", str(int(at)), "--output", "json")  # fmt: skip
    assert code == 3, out
    assert typo["canary"] == {"version": "canray", "seen": False, "requests": 0, "errors": 0,
                              "success_rate_pct": None, "p99_latency_ms": None}  # fmt: skip
    assert typo["reasons"][0].startswith('destination_version="canray" has no series at all for')
    code, quiet, out = analyze_cli(url, "--namespace=shop", "--service=retired", "--canary=canary", "--stable=stable",
                                   "--at", str(int(at)), "--output", "json")  # fmt: skip
    assert code == 3, out
    assert quiet["canary"]["seen"] is True and quiet["canary"]["requests"] == 0
    assert quiet["stable"]["requests"] == 10 * 300  # all of the caller's traffic since the canary left
    assert not any("no series" in r for r in quiet["reasons"])
    code, _, out = analyze_cli(url, "--namespace=shop", "--service=retired", "--canary=canary", "--stable=stable",
                               "--at", str(int(at)))  # fmt: skip
    assert code == 3 and "no series at all" not in out and "verdict: INCONCLUSIVE" in out


@pytest.mark.parametrize(
    ("flag", "value", "line"),
    [
        ("--namespace", "Shop", "--namespace: not a Kubernetes name: 'Shop'"),
        ("--service", "reviews.v1", "--service: not a Kubernetes name: 'reviews.v1'"),
        ("--canary", 'x"}', "--canary: not a Kubernetes label value: 'x\"}'"),
        ("--window", "0s", "--window: must be longer than 0, got '0s'"),
        ("--window", "99999999999999999999y", "--window: "),  # the bound is exporter.cli.common.duration_flag's
        ("--window", "3661d", "--window: "),
    ],
)
def test_invalid_names_are_exit_2_with_one_line(flag: str, value: str, line: str) -> None:
    args = {"--namespace": "shop", "--service": "reviews", "--canary": "canary", "--stable": "stable", flag: value}
    code, _, out = analyze_cli("http://127.0.0.1:9", *(f"{k}={v}" for k, v in args.items()))
    assert code == 2
    [only] = out.strip().splitlines()
    assert only.startswith(f"exporter: config error: {line}")
