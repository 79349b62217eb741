"""Canary counts are counts on every backend: a canary that starts 100 s before the instant, measured on a
real VictoriaMetrics and a real Prometheus loaded with the same samples, gives the generator's exact
request, 5xx and bucket counts on both, where rate × window on VictoriaMetrics would count it threefold."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator

import pytest
import requests

from exporter.canary.measure import measure_subsets
from exporter.model import ServiceRef
from exporter.query import promql
from exporter.query.prometheus import PrometheusClient
from sandbox.meshsim import Caller, Phase, Service, Version
from sandbox.victoria import VictoriaMetricsServer
from tests.support.canary_mesh import QUICK
from tests.support.prom import PrometheusFactory

pytestmark = pytest.mark.integration

STEP = 30.0
RPS = 40.0
LATE_S = 100  # the canary's first request is this long before the instant: mid-window of 5 m
ERRORS = 0.05
before = Service("shop", "reviews", (Caller("web", "frontend", RPS),), (Version("stable", latency=QUICK),))
after = Service("shop", "reviews", (Caller("web", "frontend", RPS),), (
    Version("stable", share=0.9, latency=QUICK),
    Version("canary", share=0.1, error_rate=ERRORS, latency=QUICK),
))  # fmt: skip
CANARY = RPS * 0.1 * LATE_S  # 400 requests, 20 of them 5xx
STABLE = RPS * (300 - LATE_S) + RPS * 0.9 * LATE_S  # 8,000 + 3,600


@pytest.fixture(scope="module")
def backends(make_prometheus: PrometheusFactory) -> Iterator[tuple[float, dict[str, str]]]:
    at = math.floor(time.time() / STEP) * STEP
    phases = (Phase(at - 1800, (before,)), Phase(at - LATE_S, (after,)))
    prom = make_prometheus(phases, end=at, step=STEP)
    with VictoriaMetricsServer() as vm:
        vm.load(phases, end=at, step=STEP)
        yield at, {"prometheus": prom.url, "victoria-metrics": vm.url}


@pytest.mark.parametrize("backend", ["prometheus", "victoria-metrics"])
def test_a_canary_born_mid_window_is_counted_exactly(backends: tuple[float, dict[str, str]], backend: str) -> None:
    at, urls = backends
    subsets = measure_subsets(
        PrometheusClient(urls[backend]), ServiceRef("shop", "reviews"), ("canary", "stable"), at=at, window="5m"
    )
    assert (subsets["canary"].requests, subsets["canary"].errors) == (round(CANARY), round(CANARY * ERRORS))
    assert (subsets["stable"].requests, subsets["stable"].errors) == (round(STABLE), 0)
    assert subsets["canary"].buckets[-1] == (math.inf, pytest.approx(CANARY, rel=1e-9))
    assert dict(subsets["canary"].buckets)[50.0] == pytest.approx(CANARY * dict(QUICK.cumulative())[50.0], rel=1e-9)
    assert subsets["canary"].p99_ms == pytest.approx(75.0)  # QUICK's p99, by histogram_quantile's interpolation


def test_rate_times_window_would_inflate_the_canary_on_victoria_metrics(
    backends: tuple[float, dict[str, str]],
) -> None:
    at, urls = backends
    query = promql.rate_sum(
        ("destination_version",), window="5m", matchers=[promql.Matcher("destination_version", "canary")]
    )
    answers = {}
    for backend, url in urls.items():
        r = requests.get(f"{url}/api/v1/query", params={"query": query, "time": at}, timeout=30)
        [sample] = r.json()["data"]["result"]
        answers[backend] = float(sample["value"][1]) * 300
    # Prometheus: the counter starts at 0, so extrapolation stops there and rate × 300 is exact here;
    # VictoriaMetrics divides by the 100 s it has samples for: three times the requests.
    assert answers["prometheus"] == pytest.approx(CANARY, rel=1e-9)
    assert answers["victoria-metrics"] == pytest.approx(3 * CANARY, rel=0.02)
