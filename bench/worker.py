"""The measured side of the benchmark, one process per measurement: `python -m bench.worker MODE SPEC.json`.

Modes (each prints one JSON object on stdout):
- `warm`: the exporter as the daemon runs it, clients built once from the environment's settings
  (clients.prometheus/datadog/discovery), the Services listed once (the daemon's cached list), then
  pipelined cycles (run_cycle with a sink), each right after a floor run in the same process;
- `floor`: the four grouped queries of `promql.figure_queries` over plain HTTP, concurrently, bodies
  read and not decoded: what any exporter built on these queries must at least pay;
- `baseline`: THE ONE-QUERY-PER-SERVICE PATTERN, written here for comparison and never part of the
  exporter: per service, three PromQL queries (success %, mTLS %, p99) and one Datadog request.
Wall and CPU time are per run; peak RSS is the process's (ru_maxrss) after all runs.
"""

from __future__ import annotations

import http.client
import json
import math
import resource
import sys
import time
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlparse

Spec = dict[str, Any]


def _peak_rss_mb() -> float:
    """This process's peak RSS since exec (VmHWM; ru_maxrss would include the parent's, see bench.run)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _timed(fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return {"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu, **out}


def warm(spec: Spec) -> dict[str, Any]:
    from exporter import config as settings
    from exporter import logs
    from exporter.cli import clients
    from exporter.export.cycle import run_cycle

    config = settings.load(None)
    logs.configure(level=config.log_level, secrets=config.secrets())
    prom, sink, discovery = clients.prometheus(config), clients.datadog(config), clients.discovery(config)
    # The daemon lists the Services on its own schedule and every cycle measures the list it keeps: listed
    # once here (timed, reported beside the cycle), never inside a measured cycle.
    listed = _timed(lambda: {"services": discovery.list_services(), "kube_requests": discovery.requests_made})
    services = listed.pop("services")

    def cycle() -> dict[str, Any]:
        result = run_cycle(
            services,
            prom=prom,
            at=spec["at"],
            window=config.rate_window,
            namespaces=config.namespaces,
            sink=sink,
            tags=config.tags,
        )
        assert result.ok and result.submitted is not None, "the benchmarked cycle failed"
        return {
            "services": len(services),
            "with_traffic": result.with_traffic,
            "query": result.durations["query"],
            "submit": result.durations["submit"],
            "promql_requests": result.promql_requests,
            "datadog_requests": result.submitted.requests,
            "points": result.submitted.points,
            "peak_rss_after_cycle_mb": _peak_rss_mb(),
        }

    # Each measured cycle follows a floor run in this same process, so that the two see the same load.
    floor_spec = {**spec["floor"], "warmup": 0, "runs": 1}
    first = _timed(cycle)
    runs, floors = [], []
    for _ in range(spec["runs"]):
        floors += floor(floor_spec)["runs"]
        runs.append(_timed(cycle))
    return {"discovery": listed, "first": first, "runs": runs, "floor_runs": floors, "peak_rss_mb": _peak_rss_mb()}


def _query_path(prom_url: str, query: str, at: float) -> str:
    prefix = urlparse(prom_url).path.rstrip("/")
    return f"{prefix}/api/v1/query?" + urlencode({"query": query, "time": f"{at:.3f}", "timeout": "120s"})


def floor(spec: Spec) -> dict[str, Any]:
    target = urlparse(spec["prom_url"])
    paths = [_query_path(spec["prom_url"], q, spec["at"]) for q in spec["queries"]]
    connections = [http.client.HTTPConnection(target.hostname or "", target.port) for _ in paths]

    def fetch(index: int) -> int:
        connections[index].request("GET", paths[index])
        response = connections[index].getresponse()
        body = response.read()
        if response.status != 200:
            raise RuntimeError(f"floor query {index} -> {response.status}: {body[:200]!r}")
        return len(body)

    with ThreadPoolExecutor(max_workers=len(paths)) as pool:

        def run() -> dict[str, Any]:
            return {"promql_requests": len(paths), "bytes_received": sum(pool.map(fetch, range(len(paths))))}

        runs = [_timed(run) for _ in range(spec["warmup"] + spec["runs"])][spec["warmup"] :]
    return {"runs": runs, "peak_rss_mb": _peak_rss_mb()}


def baseline(spec: Spec) -> dict[str, Any]:
    """The per-service loop (bench only): 3 PromQL + 1 Datadog request per service, sequentially."""
    import requests

    from exporter.query import promql

    def ratio_pct(numerator: list[promql.Matcher], *, window: str, matchers: list[promql.Matcher]) -> str:
        """The baseline's per-service ratio as such exporters write it, one expression: 100 × rate(part)
        / rate(all). (Empty when the numerator has no series: the trap the exporter avoids.)"""
        part = promql.rate_sum((), window=window, matchers=[*matchers, *numerator])
        return f"100 * {part} / {promql.rate_sum((), window=window, matchers=matchers)}"

    from exporter.model import ServiceRef
    from exporter.sink.datadog import Point, tags_for

    services = [ServiceRef(ns, name) for ns, name in json.loads(Path(spec["services_file"]).read_text())]
    window, at, budget = spec["window"], spec["at"], spec["budget_seconds"]
    session = requests.Session()
    query_url = spec["prom_url"].rstrip("/") + "/api/v1/query"
    series_url = spec["intake_url"].rstrip("/") + "/api/v2/series"
    headers = {"DD-API-KEY": spec["api_key"], "Content-Type": "application/json", "Content-Encoding": "deflate"}

    def value(query: str) -> float | None:
        response = session.get(query_url, params={"query": query, "time": f"{at:.3f}", "timeout": "10s"})
        response.raise_for_status()
        result = response.json()["data"]["result"]
        return float(result[0]["value"][1]) if result else None

    def run() -> dict[str, Any]:
        started = time.perf_counter()
        done = queries = posts = sent = 0
        for ref in services:
            if budget and time.perf_counter() - started >= budget:
                break
            by_service = [
                promql.Matcher("destination_service_namespace", ref.namespace),
                promql.Matcher("destination_service_name", ref.name),
            ]
            figures = {
                "istio.service.success_rate_pct": value(
                    ratio_pct([promql.Matcher("response_code", "5..", "!~")], window=window, matchers=by_service)
                ),
                "istio.service.mtls_coverage_pct": value(
                    ratio_pct(
                        [promql.Matcher("connection_security_policy", "mutual_tls")], window=window, matchers=by_service
                    )
                ),
                "istio.service.p99_latency_ms": value(promql.quantile(0.99, (), window=window, matchers=by_service)),
            }
            queries += 3
            tags = tags_for(namespace=ref.namespace, service=ref.name)
            sent_figures = {m: v for m, v in figures.items() if v is not None and math.isfinite(v)}
            series = ",".join(Point(m, v, int(at), tags).encoded() for m, v in sent_figures.items())
            body = zlib.compress(('{"series":[' + series + "]}").encode())
            session.post(series_url, data=body, headers=headers).raise_for_status()
            posts, sent, done = posts + 1, sent + len(body), done + 1
        return {"services_done": done, "promql_requests": queries, "datadog_requests": posts, "bytes_sent": sent}

    runs = [_timed(run) for _ in range(spec["runs"])]
    return {"runs": runs, "services": len(services), "peak_rss_mb": _peak_rss_mb()}


MODES: dict[str, Callable[[Spec], dict[str, Any]]] = {"warm": warm, "floor": floor, "baseline": baseline}


def main(argv: list[str]) -> int:
    mode, spec_file = argv
    result = MODES[mode](json.loads(Path(spec_file).read_text()))
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
