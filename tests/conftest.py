"""Fixtures shared by every test folder: real Prometheus servers over synthetic meshes, a demo Kubernetes API."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from sandbox.kubeapi import FakeKubeAPI
from sandbox.meshsim import REPORTERS, Phase, demo_mesh, kube_service_manifests
from sandbox.prom import PrometheusServer
from tests.support.prom import DEMO_AHEAD, DEMO_STEP, DemoProm, PrometheusFactory, start_prometheus


@pytest.fixture(scope="session")
def make_prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusFactory]:
    """`make_prometheus(phases, end=..., step=...)`: a started server, stopped at the end of the session."""
    servers: list[PrometheusServer] = []

    def make(
        phases: Sequence[Phase], *, end: float, step: float, reporters: Sequence[str] = REPORTERS
    ) -> PrometheusServer:
        server = start_prometheus(tmp_path_factory, phases, end=end, step=step, reporters=reporters)
        servers.append(server)
        return server

    try:
        yield make
    finally:
        for server in servers:
            server.stop()


@pytest.fixture(scope="session")
def demo_prom(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoProm]:
    """A Prometheus serving sandbox.meshsim.demo_mesh (both reporters), 40 minutes up to `at` and the last
    phase going on for DEMO_AHEAD seconds after it: tests that pass `--at` see the mesh end at `at`, and a
    daemon measuring "now" still finds a full window however long the session has run (past `at` + 5 min
    the series would be stale and a daemon would find nothing to send)."""
    at = math.floor(time.time() / DEMO_STEP) * DEMO_STEP
    phases = demo_mesh(at)
    server = start_prometheus(tmp_path_factory, phases, end=at + DEMO_AHEAD, step=DEMO_STEP)
    try:
        yield DemoProm(url=server.url, phases=phases, at=at, step=DEMO_STEP)
    finally:
        server.stop()


@pytest.fixture
def demo_kube(demo_prom: DemoProm, tmp_path: Path) -> Iterator[tuple[FakeKubeAPI, Path]]:
    """A Kubernetes API serving the demo mesh's Services, and a kubeconfig for it."""
    with FakeKubeAPI() as api:
        for manifest in kube_service_manifests(demo_prom.services):
            api.add(manifest)
        yield api, api.write_kubeconfig(tmp_path / "kubeconfig")
