"""`make demo`: the exporter end to end on embedded defaults, on loopback only.

Generates the demo mesh (sandbox.meshsim.demo_mesh), backfills it into a real Prometheus, serves
its Services from a local Kubernetes API and receives points in a local Datadog intake, then runs
`exporter once --submit` exactly as a user would and shows what the intake received.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from sandbox.intake import FakeIntake
from sandbox.kubeapi import FakeKubeAPI
from sandbox.meshsim import demo_mesh, kube_service_manifests
from sandbox.prom import PrometheusServer, build_tsdb

STEP = 15.0
DEMO_KEY = "demo-api-key"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox.demo", description=__doc__)
    parser.add_argument("--workdir", type=Path, default=Path(".demo"), help="scratch directory (recreated)")
    parser.add_argument("--output", choices=("table", "json"), default="table")
    args = parser.parse_args(argv)

    shutil.rmtree(args.workdir, ignore_errors=True)
    args.workdir.mkdir(parents=True)
    now = math.floor(time.time() / STEP) * STEP
    phases = demo_mesh(now)
    print(f"demo: generating {len(phases[-1].services)} services, 40 minutes of Istio metrics ...", flush=True)
    build_tsdb(phases, args.workdir / "tsdb", end=now, step=STEP)
    with (
        PrometheusServer(args.workdir / "tsdb") as prom,
        FakeKubeAPI() as kube,
        FakeIntake(api_key=DEMO_KEY) as intake,
    ):
        for manifest in kube_service_manifests(phases[-1].services):
            kube.add(manifest)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("EXPORTER_", "DD_"))}
        env.update(
            EXPORTER_PROMETHEUS_URL=prom.url,
            EXPORTER_DATADOG_URL=intake.url,
            DD_API_KEY=DEMO_KEY,
            KUBECONFIG=str(kube.write_kubeconfig(args.workdir / "kubeconfig")),
            EXPORTER_TAGS="env:demo",
            EXPORTER_LOG_LEVEL="warning",
        )
        print(f"demo: Prometheus {prom.url}, Kubernetes API {kube.url}, Datadog intake {intake.url}\n", flush=True)
        command = [sys.executable, "-m", "exporter", "once", "--at", str(int(now)), "--submit", "--output", args.output]
        code = subprocess.run(command, env=env, check=False).returncode
        points = intake.points()
        by_metric = Counter(p.metric for p in points)
        print(f"\ndemo: the intake received {len(points)} points in {len(intake.requests)} request(s):", flush=True)
        for metric, count in sorted(by_metric.items()):
            print(f"  {metric:<34} {count:>3} points", flush=True)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
