"""A cycle's request count is a design property: the same for 10 services as for 500."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import requests

from exporter.export.cycle import run_cycle
from exporter.kube.client import KubeClient, api_client
from exporter.kube.discovery import KubeDiscovery
from exporter.query.prometheus import PrometheusClient
from exporter.sink.datadog import DatadogAPI, DatadogSink
from sandbox.intake import FakeIntake
from sandbox.kubeapi import FakeKubeAPI
from sandbox.meshsim import kube_service_manifests, scaled_mesh
from tests.support.prom import PrometheusFactory


class CountingSession(requests.Session):
    """A requests.Session that counts what actually goes on the wire."""

    def __init__(self) -> None:
        super().__init__()
        self.sent = 0

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        self.sent += 1
        return super().send(request, **kwargs)


def one_cycle(make_prometheus: PrometheusFactory, tmp_path: Path, n: int) -> tuple[int, int, int, int]:
    now = float(int(time.time() // 30 * 30))
    phases = scaled_mesh(n, now=now, seed=n)
    prom_server = make_prometheus(phases, end=now, step=30.0, reporters=("destination",))
    session = CountingSession()
    prom = PrometheusClient(prom_server.url, session=session)
    with FakeKubeAPI() as kube, FakeIntake(api_key="k") as intake:
        for manifest in kube_service_manifests(phases[-1].services):
            kube.add(manifest)
        discovery = KubeDiscovery(
            KubeClient(api_client(str(kube.write_kubeconfig(tmp_path / f"kc{n}")))), label_selector="migrated=true"
        )
        services = discovery.list_services()
        assert len(services) == n
        result = run_cycle(
            services, prom=prom, at=int(now), window="5m", sink=DatadogSink(DatadogAPI(intake.url, api_key="k"))
        )
        assert result.ok and result.submitted is not None
        with_traffic = sum(1 for f in result.figures.values() if f.request_rate is not None)
        assert with_traffic == n and len(intake.points()) == result.submitted.points >= 3 * n
        return session.sent, len(intake.requests), with_traffic, len(intake.points())


def test_requests_per_cycle_do_not_grow_with_services(make_prometheus: PrometheusFactory, tmp_path: Path) -> None:
    small = one_cycle(make_prometheus, tmp_path, 10)
    large = one_cycle(make_prometheus, tmp_path, 500)
    # Four grouped PromQL queries; Datadog: one request per hand-over (the figures ready while the slowest
    # query runs, then the rest), so one or two, at 10 services as at 500.
    assert small[0] == large[0] == 4
    assert 1 <= small[1] <= 2 and 1 <= large[1] <= 2
    assert (small[2], large[2]) == (10, 500)


@pytest.mark.parametrize("page", [1, 7])
def test_discovery_follows_pagination(tmp_path: Path, page: int) -> None:
    now = 1_800_000_000.0
    services = scaled_mesh(23, now=now)[-1].services
    with FakeKubeAPI(page_limit_cap=page) as kube:
        for manifest in kube_service_manifests(services):
            kube.add(manifest)
        kube.add({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "other", "namespace": "ns-0000",
                  "labels": {"migrated": "false"}}, "spec": {"ports": [{"port": 80}]}})  # fmt: skip
        discovery = KubeDiscovery(
            KubeClient(api_client(str(kube.write_kubeconfig(tmp_path / "kc")))), label_selector="migrated=true"
        )
        found = discovery.list_services()
        assert [(s.namespace, s.name) for s in found] == sorted((s.namespace, s.name) for s in services)
        lists = [r for r in kube.requests if r.path == "/api/v1/services"]
        assert len(lists) == -(-len(services) // page)  # ceil: one request per page
        assert {r.query.get("labelSelector") for r in lists} == {"migrated=true"}
