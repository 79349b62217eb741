"""The synthetic mesh as a real Prometheus answers PromQL about it: figures equal the parameters."""

from __future__ import annotations

import math
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import pytest
import requests

from sandbox.meshsim import ISTIO_BUCKETS_MS, Caller, Phase, Service, write_openmetrics
from sandbox.prom import BackfillError, PrometheusServer, PrometheusStartError, backfill

pytestmark = pytest.mark.integration

BY_SERVICE = "destination_service_namespace, destination_service_name"
_HTTP = requests.Session()
_HTTP.trust_env = False  # loopback: never through a proxy from the environment


class DemoProm(Protocol):  # what the demo_prom fixture gives
    url: str
    phases: tuple[Phase, ...]
    at: float

    @property
    def services(self) -> tuple[Service, ...]: ...


def query(url: str, promql: str, at: float) -> list[dict[str, Any]]:
    response = _HTTP.get(f"{url}/api/v1/query", params={"query": promql, "time": at}, timeout=10)
    response.raise_for_status()
    body = response.json()
    assert body["status"] == "success", body
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def per_service(url: str, promql: str, at: float) -> dict[tuple[str, str], float]:
    return {
        (r["metric"]["destination_service_namespace"], r["metric"]["destination_service_name"]): float(r["value"][1])
        for r in query(url, promql, at)
    }


def key(svc: Service) -> tuple[str, str]:
    return (svc.namespace, svc.name)


def selector(svc: Service) -> str:
    return f'destination_service_namespace="{svc.namespace}",destination_service_name="{svc.name}"'


def approx(expected: float) -> Any:
    return pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_request_rate_per_service_is_the_sum_of_its_callers(demo_prom: DemoProm) -> None:
    got = per_service(
        demo_prom.url,
        f'sum by ({BY_SERVICE}) (rate(istio_requests_total{{reporter="destination"}}[5m]))',
        demo_prom.at,
    )
    expected = {key(s): sum(c.rps for c in s.callers) for s in demo_prom.services}
    assert set(got) == set(expected)
    assert got == {k: approx(v) for k, v in expected.items()}


def test_source_reporter_doubles_in_mesh_traffic(demo_prom: DemoProm) -> None:
    source = per_service(
        demo_prom.url,
        f'sum by ({BY_SERVICE}) (rate(istio_requests_total{{reporter="source"}}[5m]))',
        demo_prom.at,
    )
    both = per_service(demo_prom.url, f"sum by ({BY_SERVICE}) (rate(istio_requests_total[5m]))", demo_prom.at)
    in_mesh = {key(s): sum(c.rps for c in s.callers if c.workload != "unknown") for s in demo_prom.services}
    total = {key(s): sum(c.rps for c in s.callers) for s in demo_prom.services}
    only_outside = {k for k in total if not any(c.workload != "unknown" for c in _service(demo_prom, k).callers)}
    assert only_outside, "the demo mesh should have a service only called from outside the mesh"
    assert set(source) == set(in_mesh) - only_outside
    assert source == {k: approx(in_mesh[k]) for k in source}
    assert both == {k: approx(total[k] + in_mesh[k]) for k in total}
    assert any(in_mesh[k] > 0 and both[k] > total[k] for k in total)


def _service(demo_prom: DemoProm, k: tuple[str, str]) -> Service:
    return next(s for s in demo_prom.services if key(s) == k)


def test_source_reporter_does_not_reveal_mtls(demo_prom: DemoProm) -> None:
    result = query(
        demo_prom.url, 'count by (connection_security_policy) (istio_requests_total{reporter="source"})', demo_prom.at
    )
    assert [r["metric"] for r in result] == [{"connection_security_policy": "unknown"}]


def test_service_without_mtls_has_no_mutual_tls_series(demo_prom: DemoProm) -> None:
    plain = [s for s in demo_prom.services if s.callers and all(c.mtls_share == 0 for c in s.callers)]
    assert plain, "the demo mesh should have a service with 0 % mTLS"
    for svc in plain:
        mtls = query(
            demo_prom.url,
            f'istio_requests_total{{reporter="destination",connection_security_policy="mutual_tls",{selector(svc)}}}',
            demo_prom.at,
        )
        assert mtls == []
        none = query(
            demo_prom.url,
            f'istio_requests_total{{reporter="destination",connection_security_policy="none",{selector(svc)}}}',
            demo_prom.at,
        )
        assert none, f"{key(svc)} should have connection_security_policy=none series"


def test_mtls_coverage_follows_caller_shares(demo_prom: DemoProm) -> None:
    promql = (
        f'sum by ({BY_SERVICE}) (rate(istio_requests_total{{reporter="destination",'
        f'connection_security_policy="mutual_tls"}}[5m]))'
        f' / sum by ({BY_SERVICE}) (rate(istio_requests_total{{reporter="destination"}}[5m]))'
    )
    got = per_service(demo_prom.url, promql, demo_prom.at)
    expected = {
        key(s): sum(c.rps * c.mtls_share for c in s.callers) / sum(c.rps for c in s.callers)
        for s in demo_prom.services
        if any(c.rps * c.mtls_share > 0 for c in s.callers)
    }
    assert any(0 < v < 1 for v in expected.values())
    # a service whose mutual_tls series exist but carry no traffic now: 0 / 0
    idle = {k for k, v in got.items() if math.isnan(v)}
    assert idle == {
        key(s)
        for s in demo_prom.services
        if sum(c.rps for c in s.callers) == 0
        and any(
            c.rps * c.mtls_share > 0
            for p in demo_prom.phases
            for t in p.services
            if key(t) == key(s)
            for c in t.callers
        )
    }
    assert idle, "the demo mesh should have an idle service with mutual_tls series"
    assert {k: v for k, v in got.items() if k not in idle} == {k: approx(v) for k, v in expected.items()}


def test_success_rate_and_the_service_that_always_fails(demo_prom: DemoProm) -> None:
    ok = f'sum by ({BY_SERVICE}) (rate(istio_requests_total{{reporter="destination",response_code!~"5.."}}[5m]))'
    got = per_service(demo_prom.url, ok, demo_prom.at)
    expected = {
        key(s): sum(c.rps * v.share * (1 - v.error_rate) for c in s.callers for v in s.versions)
        for s in demo_prom.services
        if any(v.error_rate < 1 for v in s.versions) and sum(c.rps for c in s.callers) > 0
    }
    failing = [s for s in demo_prom.services if all(v.error_rate == 1 for v in s.versions)]
    assert failing, "the demo mesh should have a service answering every request 503"
    assert {key(s) for s in failing}.isdisjoint(got)
    # the idle service has non-5xx series, whose rate is 0 now
    assert {k: v for k, v in got.items() if v != 0} == {k: approx(v) for k, v in expected.items()}


def test_idle_service_has_series_but_no_traffic_after_the_change(demo_prom: DemoProm) -> None:
    first, last = demo_prom.phases[0], demo_prom.phases[-1]
    before = {key(s): sum(c.rps for c in s.callers) for s in first.services}
    idle = [s for s in last.services if sum(c.rps for c in s.callers) == 0 and before[key(s)] > 0]
    assert idle, "the demo mesh should have a service whose traffic stops"
    for svc in idle:
        rate = f'sum(rate(istio_requests_total{{reporter="destination",{selector(svc)}}}[5m]))'
        now = query(demo_prom.url, rate, demo_prom.at)
        assert [float(r["value"][1]) for r in now] == [0.0]
        earlier = query(demo_prom.url, rate, last.start - 60)  # window entirely in the first phase
        assert [float(r["value"][1]) for r in earlier] == [approx(before[key(svc)])]
        ok = rate.replace("}", ',response_code!~"5.."}')
        ratio = query(demo_prom.url, f"{ok} / {rate}", demo_prom.at)
        assert len(ratio) == 1 and math.isnan(float(ratio[0]["value"][1]))


def test_median_latency_lands_in_the_expected_bucket(demo_prom: DemoProm) -> None:
    bounds = [0.0, *map(float, ISTIO_BUCKETS_MS), math.inf]
    checked = 0
    for svc in demo_prom.services:
        profiles = {v.latency for v in svc.versions}
        if len(profiles) != 1 or sum(c.rps for c in svc.callers) == 0:
            continue
        (latency,) = profiles
        cumulative = 0.0
        high = next(  # the first bucket holding the 50th percentile
            le for le, fraction in latency.shares if (cumulative := cumulative + fraction) >= 0.5
        )
        low = bounds[bounds.index(high) - 1]
        result = query(
            demo_prom.url,
            "histogram_quantile(0.5, sum by (le) (rate(istio_request_duration_milliseconds_bucket"
            f'{{reporter="destination",{selector(svc)}}}[5m])))',
            demo_prom.at,
        )
        assert len(result) == 1
        median = float(result[0]["value"][1])
        assert low < median <= high, f"{key(svc)}: median {median} outside ({low}, {high}]"
        checked += 1
    assert checked >= 10


def _tiny_tsdb(tmp_path: Path, name: str, rps: float) -> Path:
    phases = (Phase(1_700_000_000, (Service("ns", name, (Caller("client", "c", rps),)),)),)
    path = tmp_path / f"{name}.om"
    write_openmetrics(path, phases, end=1_700_000_600, step=30, reporters=("destination",))
    backfill(path, tmp_path / name)
    return tmp_path / name


def test_servers_run_side_by_side(tmp_path: Path) -> None:
    one = PrometheusServer(_tiny_tsdb(tmp_path, "one", 1.0))
    two = PrometheusServer(_tiny_tsdb(tmp_path, "two", 2.0))
    with one, two:
        assert one.url != two.url
        promql = "sum by (destination_service_name) (rate(istio_requests_total[5m]))"
        assert [r["metric"]["destination_service_name"] for r in query(one.url, promql, 1_700_000_600)] == ["one"]
        assert [float(r["value"][1]) for r in query(two.url, promql, 1_700_000_600)] == [approx(2.0)]
    with pytest.raises(RuntimeError, match="not started"):
        _ = one.url


def test_busy_port_fails_with_the_log_tail(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        server = PrometheusServer(_tiny_tsdb(tmp_path, "busy", 1.0), port=busy.getsockname()[1])
        with pytest.raises(PrometheusStartError, match="address already in use"):
            server.start()


def test_backfill_reports_promtool_errors(tmp_path: Path) -> None:
    text = tmp_path / "broken.om"
    text.write_text("# TYPE x counter\nx_total 1 1700000000\n")  # no "# EOF"
    with pytest.raises(BackfillError, match="EOF"):
        backfill(text, tmp_path / "tsdb")


def test_prometheus_factory_serves_the_given_phases(make_prometheus: Callable[..., PrometheusServer]) -> None:
    phases = (
        Phase(1_700_000_000, (Service("ns", "solo", (Caller("unknown", "unknown", 5.0, 0.0),)),)),
        Phase(1_700_000_450, (Service("ns", "solo", (Caller("unknown", "unknown", 7.5, 0.0),)),)),
    )
    server = make_prometheus(phases, end=1_700_000_900, step=15, reporters=("destination",))
    promql = "sum(rate(istio_requests_total[5m]))"
    assert [float(r["value"][1]) for r in query(server.url, promql, 1_700_000_400)] == [approx(5.0)]
    assert [float(r["value"][1]) for r in query(server.url, promql, 1_700_000_900)] == [approx(7.5)]
    assert query(server.url, 'istio_requests_total{reporter="source"}', 1_700_000_900) == []


def test_an_unseen_caller_writes_source_series_only(tmp_path: Path) -> None:
    """Caller.unseen (partial sidecar injection): its own proxy reports what it sends, the destination's
    proxies report nothing from it, while the other callers of the same service are seen on both sides."""
    seen, unseen = Caller("web", "shop", 2.0), Caller("gw", "edge", 1.0, unseen=True)
    phases = [Phase(1_700_000_000, (Service("shop", "app", (seen, unseen)),))]
    path = tmp_path / "mesh.om"
    write_openmetrics(path, phases, end=1_700_000_060, step=15)
    lines = [line for line in path.read_text().splitlines() if line.startswith("istio_requests_total{")]

    def reported(caller: str, reporter: str) -> bool:
        return any(f'reporter="{reporter}"' in line and f'source_workload="{caller}"' in line for line in lines)

    assert reported("web", "destination") and reported("web", "source")
    assert reported("gw", "source") and not reported("gw", "destination")
