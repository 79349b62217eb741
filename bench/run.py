"""`make bench`: cycle cost from 527 to 10,000 services, with the floor and the per-service baseline.

For each mesh size: a real Prometheus over the cached synthetic TSDB (bench.mesh), the local
Kubernetes API serving the mesh's Services and local Datadog intakes; for each network (plain
loopback, then through DelayProxy: 1 ms to Prometheus and to the Kubernetes API, 30 ms to the
intake), measured in separate processes (bench.worker): the floor, warm cycles, cold
`exporter once --submit` processes and the baseline. Raw results go to bench/out/results.json,
the report to bench/RESULTS.md and the chart to bench/cycle-time.png (bench.report).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from bench import mesh, report
from bench.proxy import DelayProxy
from bench.stats import extrapolate, summarize
from exporter.query import promql
from sandbox.intake import FakeIntake
from sandbox.kubeapi import FakeKubeAPI
from sandbox.meshsim import kube_service_manifests
from sandbox.prom import PrometheusServer

HERE = Path(__file__).resolve().parent
API_KEY = "bench-api-key"
SIZES = (527, 2_000, 10_000)
NETWORKS: dict[str, dict[str, float]] = {
    "loopback": {"prometheus": 0.0, "kubernetes": 0.0, "datadog": 0.0},
    "delayed": {"prometheus": 0.001, "kubernetes": 0.001, "datadog": 0.030},
}
INTERVAL = 30.0  # the daemon's default cycle interval: the baseline's budget on large meshes
BASELINE_FULL_UP_TO = 1_000  # larger meshes: the baseline pass is capped at INTERVAL, then extrapolated


def log(message: str) -> None:
    print(f"bench: {message}", flush=True)


def machine() -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = 0.0
    with contextlib.suppress(OSError, ValueError, IndexError):
        memory = int(Path("/proc/meminfo").read_text().split()[1]) / 1024 / 1024
    prometheus = subprocess.run(["prometheus", "--version"], capture_output=True, text=True, check=False)
    return {
        "cpus": os.cpu_count(),
        "cpu_model": cpu,
        "memory_gb": round(memory, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "prometheus": (prometheus.stdout or prometheus.stderr).splitlines()[0] if prometheus.returncode == 0 else "?",
    }


def _worker(mode: str, spec: dict[str, Any], *, env: dict[str, str] | None = None) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(spec, f)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "bench.worker", mode, f.name],
            capture_output=True,
            text=True,
            env=env or _base_env(),
            cwd=HERE.parent,
            check=False,
        )
    finally:
        os.unlink(f.name)
    if done.returncode != 0:
        raise RuntimeError(f"bench worker {mode} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return result


def _base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EXPORTER_", "DD_", "KUBECONFIG"))}
    env["PYTHONPATH"] = str(HERE.parent)
    return env


def _exporter_env(prom_url: str, kubeconfig: Path, intake_url: str) -> dict[str, str]:
    env = _base_env()
    env.update(
        EXPORTER_PROMETHEUS_URL=prom_url,
        EXPORTER_DATADOG_URL=intake_url,
        DD_API_KEY=API_KEY,
        KUBECONFIG=str(kubeconfig),
        EXPORTER_TAGS="env:bench",
        EXPORTER_LOG_LEVEL="info",
        # The p99 query alone can take more than the default 10 s on two shared cores at 10,000 services.
        EXPORTER_PROMETHEUS_TIMEOUT_SECONDS="120",
    )
    return env


@contextlib.contextmanager
def _reach(url: str, delay: float) -> Iterator[str]:
    """`url` itself on plain loopback, else the URL of a DelayProxy in front of it."""
    if delay <= 0:
        yield url
        return
    with DelayProxy(url, delay=delay) as proxy:
        yield proxy.url


@contextlib.contextmanager
def _intake(delay: float) -> Iterator[tuple[FakeIntake, str]]:
    """A fresh intake (it keeps every point it receives) and the URL the exporter should use."""
    with FakeIntake(api_key=API_KEY) as intake, _reach(intake.url, delay) as url:
        yield intake, url


def _series_requests(intake: FakeIntake) -> tuple[int, int, int, int]:
    """Series requests, bytes received (compressed, then decompressed), and points accepted by the intake."""
    series = [r for r in intake.requests if r.path == "/api/v2/series"]
    if any(r.status != 202 for r in series):
        raise RuntimeError(f"the intake refused requests: {sorted({str(r.status) for r in series})}")
    decoded = sum(r.decoded_length or 0 for r in series)
    return len(series), sum(r.raw_length for r in series), decoded, len(intake.points())


def _kubeconfig(kube: FakeKubeAPI, server: str, path: Path) -> Path:
    kube.write_kubeconfig(path)
    config = yaml.safe_load(path.read_text())
    config["clusters"][0]["cluster"]["server"] = server
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _exporter_command() -> list[str]:
    script = Path(sys.executable).with_name("exporter")
    return [str(script)] if script.exists() else [sys.executable, "-m", "exporter"]


# Runs a command and reports its wall time, CPU and peak RSS. A separate, small process (python -S) forks it:
# a child started straight from this process would report this process's own peak RSS as its ru_maxrss
# (Linux keeps the high-water mark of the memory a process had before exec).
_LAUNCHER = """
import json, os, sys, time
started = time.perf_counter()
pid = os.fork()
if pid == 0:
    os.execv(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
wall = time.perf_counter() - started
with open(sys.argv[1], "w") as out:
    json.dump({"exit": os.waitstatus_to_exitcode(status), "wall": wall, "cpu": usage.ru_utime + usage.ru_stime,
               "peak_rss_mb": usage.ru_maxrss / 1024}, out)
"""


def measured_process(command: list[str], *, env: dict[str, str], work: Path) -> dict[str, Any]:
    """Run `command` (stdout, stderr to work/cold.out, cold.err): exit code, wall, CPU and peak RSS."""
    report = work / "launch.json"
    with open(work / "cold.out", "wb") as stdout, open(work / "cold.err", "wb") as stderr:
        subprocess.run(
            [sys.executable, "-S", "-c", _LAUNCHER, str(report), *command],
            env=env,
            stdout=stdout,
            stderr=stderr,
            cwd=work,
            check=True,
        )
    result: dict[str, Any] = json.loads(report.read_text())
    return result


def _cold_once(env: dict[str, str], work: Path) -> dict[str, Any]:
    """One `exporter once --submit` process, from spawn to exit."""
    command = [*_exporter_command(), "once", "--at", str(mesh.END), "--submit", "--output", "json"]
    run = measured_process(command, env=env, work=work)
    err = (work / "cold.err").read_text()
    if run["exit"] != 0:
        raise RuntimeError(f"exporter once failed (exit {run['exit']}):\n{err[-3000:]}")
    cycle = next(e for e in map(json.loads, err.splitlines()) if e.get("event") == "cycle")
    answer = json.loads((work / "cold.out").read_text())
    if answer["errors"]:
        raise RuntimeError(f"exporter once reported errors: {answer['errors']}")
    return {
        "wall": run["wall"],
        "cpu": run["cpu"],
        "peak_rss_mb": run["peak_rss_mb"],
        "services": len(answer["services"]),
        "promql_requests": cycle["promql_requests"],
        "datadog_requests": cycle["datadog_requests"],
        "points": cycle["points"],
    }


def _summaries(runs: list[dict[str, Any]], keys: tuple[str, ...]) -> dict[str, Any]:
    return {key: vars(summarize([r[key] for r in runs])) for key in keys}


def _same(runs: list[dict[str, Any]], key: str) -> Any:
    values = {r[key] for r in runs}
    if len(values) != 1:
        raise RuntimeError(f"{key} differs between runs: {sorted(values)}")
    return values.pop()


@dataclass(frozen=True)
class Setup:
    """One size on one network: where the measured processes find Prometheus, the API server, the intake."""

    size: int
    network: str
    prom_url: str
    kubeconfig: Path
    services_file: Path
    runs: int
    work: Path

    @property
    def intake_delay(self) -> float:
        return NETWORKS[self.network]["datadog"]


def measure_floor(setup: Setup) -> dict[str, Any]:
    queries = list(promql.figure_queries(window=mesh.WINDOW).values())
    spec = {"prom_url": setup.prom_url, "queries": queries, "at": mesh.END, "warmup": 1, "runs": setup.runs}
    floor = _worker("floor", spec)
    return {
        **_summaries(floor["runs"], ("wall", "cpu")),
        "peak_rss_mb": floor["peak_rss_mb"],
        "promql_requests": _same(floor["runs"], "promql_requests"),
        "bytes_received": _same(floor["runs"], "bytes_received"),
    }


def measure_warm(setup: Setup) -> dict[str, Any]:
    queries = list(promql.figure_queries(window=mesh.WINDOW).values())
    floor = {"prom_url": setup.prom_url, "queries": queries, "at": mesh.END}
    with _intake(setup.intake_delay) as (intake, intake_url):
        env = _exporter_env(setup.prom_url, setup.kubeconfig, intake_url)
        warm = _worker("warm", {"at": mesh.END, "runs": setup.runs, "floor": floor}, env=env)
        requests, sent, decoded, points = _series_requests(intake)
    cycles = setup.runs + 1
    out = {
        **_summaries(warm["runs"], ("wall", "cpu", "query", "submit")),
        "paired_floor": _summaries(warm["floor_runs"], ("wall",))["wall"],
        "discover": {k: warm["discovery"][k] for k in ("wall", "cpu", "kube_requests")},
        "peak_rss_mb": warm["peak_rss_mb"],
        "first_cycle": {k: warm["first"][k] for k in ("wall", "cpu", "query", "submit")},
        **{k: _same(warm["runs"], k) for k in ("services", "with_traffic", "promql_requests", "points")},
        # Pipelined: one request per delivery round, so 1 to 4 a cycle as the figures' answers arrive.
        "datadog_requests": max(r["datadog_requests"] for r in warm["runs"]),
        "datadog_bytes": sent / cycles,
        "datadog_decoded_bytes": decoded / cycles,
    }
    if (
        requests != sum(r["datadog_requests"] for r in [warm["first"], *warm["runs"]])
        or points != cycles * out["points"]
    ):
        raise RuntimeError(f"the intake saw {requests} requests / {points} points for {cycles} cycles")
    return out


def measure_startup(setup: Setup) -> dict[str, Any]:
    """`exporter --version`: start-up alone (interpreter, every import, the parser), no upstream."""
    command = [*_exporter_command(), "--version"]
    runs = [measured_process(command, env=_base_env(), work=setup.work) for _ in range(setup.runs)]
    return _summaries(runs, ("wall", "cpu", "peak_rss_mb"))


def measure_cold(setup: Setup) -> dict[str, Any]:
    with _intake(setup.intake_delay) as (intake, intake_url):
        env = _exporter_env(setup.prom_url, setup.kubeconfig, intake_url)
        cold = [_cold_once(env, setup.work) for _ in range(setup.runs)]
        requests, sent, _, points = _series_requests(intake)
    out = {
        **_summaries(cold, ("wall", "cpu", "peak_rss_mb")),
        "startup": measure_startup(setup) if setup.network == "loopback" else None,
        **{k: _same(cold, k) for k in ("services", "promql_requests", "points")},
        "datadog_requests": max(r["datadog_requests"] for r in cold),
        "datadog_bytes": sent / setup.runs,
    }
    if requests != sum(r["datadog_requests"] for r in cold) or points != setup.runs * out["points"]:
        raise RuntimeError(f"the intake saw {requests} requests / {points} points for {setup.runs} cold runs")
    return out


def measure_baseline(setup: Setup) -> dict[str, Any]:
    """One sequential pass (capped at INTERVAL on large meshes, then extrapolated to every service)."""
    full = setup.size <= BASELINE_FULL_UP_TO
    with _intake(setup.intake_delay) as (intake, intake_url):
        spec = {
            "prom_url": setup.prom_url,
            "intake_url": intake_url,
            "api_key": API_KEY,
            "services_file": str(setup.services_file),
            "window": mesh.WINDOW,
            "at": mesh.END,
            "runs": 1,  # one pass is already the sum of a sequential loop over every service
            "budget_seconds": 0 if full else INTERVAL,
        }
        base = _worker("baseline", spec)
        requests, sent, _, _ = _series_requests(intake)
    total = base["services"]
    walls = [extrapolate(r["wall"], done=r["services_done"], total=total) for r in base["runs"]]
    cpus = [extrapolate(r["cpu"], done=r["services_done"], total=total) for r in base["runs"]]
    done = min(r["services_done"] for r in base["runs"])
    return {
        "wall": vars(summarize(walls)),
        "cpu": vars(summarize(cpus)),
        "peak_rss_mb": base["peak_rss_mb"],
        "services_done": done,
        "measured_wall": vars(summarize([r["wall"] for r in base["runs"]])),
        "extrapolated": done < total,
        "promql_requests_per_service": 3,
        "datadog_requests_per_service": 1,
        "datadog_bytes_per_service": sent / requests,
    }


MODES = {"floor": measure_floor, "warm": measure_warm, "cold": measure_cold, "baseline": measure_baseline}


def measure_size(size: int, *, runs: int, work: Path, modes: Sequence[str] = tuple(MODES)) -> dict[str, Any]:
    built = mesh.build(size)
    services_file = work / f"services-{size}.json"
    services_file.write_text(json.dumps([[r.namespace, r.name] for r in built.refs]))
    result: dict[str, Any] = {"services": size, "samples": built.samples, "build_seconds": built.build_seconds}
    with PrometheusServer(built.tsdb) as prom, FakeKubeAPI() as kube:
        for manifest in kube_service_manifests(built.services):
            kube.add(manifest)
        for network, delays in NETWORKS.items():
            with (
                _reach(prom.url, delays["prometheus"]) as prom_url,
                _reach(kube.url, delays["kubernetes"]) as kube_url,
            ):
                kubeconfig = _kubeconfig(kube, kube_url, work / f"kubeconfig-{network}")
                setup = Setup(size, network, prom_url, kubeconfig, services_file, runs, work)
                result[network] = {}
                for mode in modes:
                    log(f"{size:,} services, {network}: {mode}")
                    result[network][mode] = MODES[mode](setup)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)), help="comma-separated mesh sizes")
    parser.add_argument("--runs", type=int, default=5, help="measured runs per configuration (median reported)")
    parser.add_argument("--results", type=Path, default=HERE / "RESULTS.md")
    parser.add_argument("--chart", type=Path, default=HERE / "cycle-time.png")
    parser.add_argument("--raw", type=Path, default=HERE / "results.json", help="raw results (JSON)")
    parser.add_argument(
        "--modes", default=",".join(MODES), help="measure only these (comma-separated); the report needs all"
    )
    args = parser.parse_args(argv)
    modes = args.modes.split(",")
    if unknown := set(modes) - set(MODES):
        parser.error(f"unknown modes: {sorted(unknown)}")
    if args.runs < 5:
        parser.error("--runs must be at least 5 (medians of at least 5 runs)")
    sizes = [int(s) for s in args.sizes.split(",")]
    started = time.perf_counter()
    mesh.OUT.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "load_before": os.getloadavg(),
        "runs": args.runs,
        "window": mesh.WINDOW,
        "step": mesh.STEP,
        "span": mesh.SPAN,
        "networks": NETWORKS,
        "sizes": [],
    }
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        for size in sizes:
            results["sizes"].append(measure_size(size, runs=args.runs, work=Path(tmp), modes=modes))
    results["seconds"] = time.perf_counter() - started
    results["load_after"] = os.getloadavg()
    results["bench_peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    raw = args.raw if set(modes) == set(MODES) else mesh.OUT / "results-partial.json"
    raw.write_text(json.dumps(results, indent=1))
    if set(modes) != set(MODES):
        log(f"done in {results['seconds']:.0f}s: {raw} (no report: not every mode was measured)")
        return 0
    relative_raw = os.path.relpath(raw, args.results.parent)
    args.results.write_text(report.markdown(results, chart=args.chart.name, raw=relative_raw))
    report.chart(results, args.chart)
    log(f"done in {results['seconds']:.0f}s: {args.results} ({raw})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
