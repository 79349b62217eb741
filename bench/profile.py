"""Where a cycle's own time goes: `python -m bench.profile N [--cold]` (cProfile of a warm cycle, or of a cold run).

Same setting as bench.run's warm cycles on plain loopback (real Prometheus over the cached mesh, the local
Kubernetes API and intake, clients built once from settings); prints the top functions by cumulative and
by own time, so that the exporter's overhead (decoding, payload building, compression, paging) shows.
"""

from __future__ import annotations

import cProfile
import os
import pstats
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import mesh
from bench.run import API_KEY, _exporter_env
from sandbox.intake import FakeIntake
from sandbox.kubeapi import FakeKubeAPI
from sandbox.meshsim import kube_service_manifests
from sandbox.prom import PrometheusServer


def cold(env: dict[str, str], size: int) -> None:
    """cProfile of a whole `exporter once --submit` process (start-up included)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "cold.prof"
        command = [sys.executable, "-m", "cProfile", "-o", str(out), "-m", "exporter", "once", "--submit"]
        subprocess.run([*command, "--at", str(mesh.END), "--output", "json"], env=env, capture_output=True, check=True)
        print(f"exporter once --submit at {size} services (profiled)")
        stats = pstats.Stats(str(out), stream=sys.stdout)
        stats.sort_stats("cumulative").print_stats(45)


def main(argv: list[str]) -> int:
    size = int(argv[0]) if argv else 10_000
    built = mesh.build(size)
    with (
        tempfile.TemporaryDirectory() as tmp,
        PrometheusServer(built.tsdb) as prom,
        FakeKubeAPI() as kube,
        FakeIntake(api_key=API_KEY) as intake,
    ):
        for manifest in kube_service_manifests(built.services):
            kube.add(manifest)
        os.environ.update(_exporter_env(prom.url, kube.write_kubeconfig(Path(tmp) / "kubeconfig"), intake.url))
        os.environ["EXPORTER_LOG_LEVEL"] = "warning"
        if "--cold" in argv:
            cold(dict(os.environ), size)
            return 0
        from exporter import config as settings
        from exporter.cli import clients
        from exporter.export.cycle import run_cycle

        config = settings.load(None)
        client, sink, discovery = clients.prometheus(config), clients.datadog(config), clients.discovery(config)

        services = discovery.list_services()  # the daemon's discovery job: outside the cycle

        def cycle() -> None:
            run_cycle(services, prom=client, at=mesh.END, window=config.rate_window, sink=sink, tags=config.tags)

        cycle()
        profile = cProfile.Profile()
        started = time.perf_counter()
        profile.enable()
        cycle()
        profile.disable()
        print(f"one warm cycle at {size} services: {time.perf_counter() - started:.2f}s wall (profiled)")
        stats = pstats.Stats(profile, stream=sys.stdout)
        stats.sort_stats("cumulative").print_stats(35)
        stats.sort_stats("tottime").print_stats(25)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
