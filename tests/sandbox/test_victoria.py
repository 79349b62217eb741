"""The VictoriaMetrics stand-in: the demo mesh loaded through its import API answers the same hand-written
PromQL as a real Prometheus backfilled with the same samples."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from sandbox.victoria import VictoriaMetricsServer, prometheus_text
from tests.support.prom import DemoProm

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def victoria(demo_prom: DemoProm) -> Iterator[VictoriaMetricsServer]:
    with VictoriaMetricsServer() as vm:
        vm.load(demo_prom.phases, end=demo_prom.at, step=demo_prom.step)
        yield vm


def instant(url: str, query: str, at: float) -> dict[tuple[str, ...], float]:
    r = requests.get(f"{url}/api/v1/query", params={"query": query, "time": at}, timeout=30)
    r.raise_for_status()
    return {tuple(sorted(s["metric"].items())): float(s["value"][1]) for s in r.json()["data"]["result"]}  # type: ignore[misc]


def test_prometheus_text_has_millisecond_timestamps(tmp_path: Path) -> None:
    path = tmp_path / "m.om"
    path.write_text('# TYPE x counter\nx_total{a="b"} 1.5 1795997600\nx_total{a="b"} 3 1795997630.5\n# EOF\n')
    assert b"".join(prometheus_text(path)) == b'x_total{a="b"} 1.5 1795997600000\nx_total{a="b"} 3 1795997630500\n'


@pytest.mark.parametrize(
    "query",
    [
        'sum by (destination_service_namespace, destination_service_name) (istio_requests_total{reporter="source"})',
        'sum by (destination_service_namespace, le) (istio_request_duration_milliseconds_bucket{reporter="source"})',
    ],
)
def test_victoria_holds_the_same_samples_as_prometheus(
    demo_prom: DemoProm, victoria: VictoriaMetricsServer, query: str
) -> None:
    for at in (demo_prom.at, demo_prom.at - 600):
        ours, theirs = instant(victoria.url, query, at), instant(demo_prom.url, query, at)
        assert ours and ours.keys() == theirs.keys()
        assert all(math.isclose(ours[k], theirs[k], rel_tol=1e-12) for k in ours)
