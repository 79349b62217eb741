"""The recording-rule mode at scale: the same cycle's query stage, raw against recorded, at one instant.

`python -m bench.rules [--sizes 2000,10000] [--runs 5]` (not part of `make test`): for each size, the
cached benchmark mesh (bench.mesh) is copied, the rules of `exporter rules` are backfilled over its last
minutes by `promtool tsdb create-blocks-from rules` against a real Prometheus, and at the last
rule-evaluation instant it measures, alternating raw and recorded so machine noise falls on both:
- *query stage* (Prometheus): the four figure queries sent concurrently over plain HTTP, answers read
  (as the floor of bench.run), wall time;
- *exporter*: `figures.measure_services` in this process (four queries, decoding, figures): wall and CPU;
and checks that every figure read from the recorded series equals the raw one (relative 1e-9). It also
times the promtool backfill, i.e. what the ruler pays to evaluate the group (per evaluation instant).
Writes bench/out/rules-<size>.json and prints a table.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import shutil
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlparse

from bench import mesh
from bench.stats import summarize
from exporter.query import figures, promql
from exporter.query.prometheus import PrometheusClient
from sandbox.prom import PrometheusServer

RULE_SPAN = 60  # rules evaluated over the last minute of data: two or three evaluation instants


def _rules_file(work: Path) -> Path:
    from exporter.cli.rules import render
    from exporter.config import Settings

    path = work / "rules.yml"
    path.write_text(render(Settings(rate_window=mesh.WINDOW, interval_seconds=30)))
    return path


def _backfill(server: PrometheusServer, rules: Path, work: Path) -> tuple[PrometheusServer, float]:
    blocks = work / "rule-blocks"
    started = time.perf_counter()
    subprocess.run(
        ["promtool", "tsdb", "create-blocks-from", "rules", "--quiet", f"--url={server.url}",
         f"--start={int(mesh.END - RULE_SPAN)}", f"--end={int(mesh.END)}", f"--output-dir={blocks}", str(rules)],
        check=True, capture_output=True, timeout=3600,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    server.stop()
    for block in blocks.iterdir():
        shutil.move(str(block), server.tsdb_dir / block.name)
    return PrometheusServer(server.tsdb_dir, startup_timeout=300).start(), seconds


def _instant(url: str) -> float:
    import requests

    name = promql.recorded_name("requests", window=mesh.WINDOW)
    r = requests.get(f"{url}/api/v1/query", params={"query": f"max(timestamp({name}))", "time": mesh.END}, timeout=60)
    return float(r.json()["data"]["result"][0]["value"][1])


def _compactions(url: str) -> float:
    """Prometheus's own count of compactions so far (one during the measurement would load the cores)."""
    import requests

    text = requests.get(f"{url}/metrics", timeout=30).text
    lines = text.splitlines()
    return sum(float(line.split()[-1]) for line in lines if line.startswith("prometheus_tsdb_compactions_total"))


def _query_stage(url: str, queries: list[str], at: float) -> float:
    """Wall time of the four queries sent concurrently over plain HTTP, answers read (bench.run's floor,
    with a timeout long enough for the raw p99 at 10,000 services on two loaded cores)."""
    target = urlparse(url)

    def fetch(query: str) -> int:
        conn = http.client.HTTPConnection(target.hostname or "", target.port, timeout=900)
        try:
            conn.request("GET", "/api/v1/query?" + urlencode({"query": query, "time": f"{at:.3f}", "timeout": "600s"}))
            response = conn.getresponse()
            body = response.read()
            if response.status != 200:
                raise RuntimeError(f"{query[:60]} -> {response.status}: {body[:200]!r}")
            return len(body)
        finally:
            conn.close()

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=len(queries)) as pool:
        list(pool.map(fetch, queries))
    return time.perf_counter() - started


def _exporter(client: PrometheusClient, source: figures.Source, at: float) -> tuple[dict[str, float], Any]:
    wall, cpu = time.perf_counter(), time.process_time()
    m = figures.measure_services(client, at=at, window=mesh.WINDOW, source=source)
    out = {"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu}
    assert not m.errors and m.source == source, (m.errors, m.source)
    return out, m.figures


def _equal(a: dict[Any, Any], b: dict[Any, Any]) -> int:
    assert a.keys() == b.keys() and a
    compared = 0
    for key, f in a.items():
        for name, value in f.values().items():
            other = b[key].values()[name]
            assert (value is None and other is None) or math.isclose(value, other, rel_tol=1e-9), (key, name)
            compared += 1
    return compared


def measure(size: int, runs: int) -> dict[str, Any]:
    m = mesh.build(size)
    with tempfile.TemporaryDirectory(prefix="bench-rules-", dir=mesh.OUT) as tmp:
        work = Path(tmp)
        shutil.copytree(m.tsdb, work / "tsdb")
        server = PrometheusServer(work / "tsdb", startup_timeout=300).start()
        queries = {
            "raw": list(promql.figure_queries(window=mesh.WINDOW).values()),
            "recorded": list(promql.recorded_figure_queries(window=mesh.WINDOW).values()),
        }
        try:
            # the raw queries on the pristine TSDB first, so the rule blocks' own effect can be seen
            pristine = [_query_stage(server.url, queries["raw"], mesh.END) for _ in range(runs + 1)][1:]
            server, backfill_seconds = _backfill(server, _rules_file(work), work)
            at = _instant(server.url)
            compactions_before = _compactions(server.url)
            client = PrometheusClient(server.url, timeout=600)
            results: dict[str, dict[str, list[float]]] = {
                s: {"query_stage": [], "wall": [], "cpu": []} for s in queries
            }
            kept: dict[str, Any] = {}
            for run in range(runs + 1):  # the first round warms both up and is discarded
                for source in ("raw", "recorded"):
                    stage = _query_stage(server.url, queries[source], at)
                    timing, kept[source] = _exporter(client, source, at)  # type: ignore[arg-type]
                    if run:
                        results[source]["query_stage"].append(stage)
                        results[source]["wall"].append(timing["wall"])
                        results[source]["cpu"].append(timing["cpu"])
            compared = _equal(kept["recorded"], kept["raw"])
            compactions = _compactions(server.url) - compactions_before
            client.close()
        finally:
            server.stop()
    return {
        "services": size,
        "samples": m.samples,
        "evaluated_at": at,
        "runs": runs,
        "figures_compared": compared,
        "raw_query_stage_before_rules": asdict(summarize(pristine)),
        "compactions_during_measurement": compactions,
        "rules_backfill_seconds": backfill_seconds,
        "rule_evaluations": len(range(int(mesh.END - RULE_SPAN), int(mesh.END) + 1, 30)),
        **{s: {k: asdict(summarize(v)) for k, v in r.items()} for s, r in results.items()},
    }


def _load() -> list[str]:
    return Path("/proc/loadavg").read_text().split()[:3]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.rules")
    parser.add_argument("--sizes", default="2000,10000")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    from exporter import logs

    logs.configure(level="warning")  # as the daemon runs: no per-query debug lines
    for size in (int(s) for s in args.sizes.split(",")):
        started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        result = {"started": started, "load_before": _load(), **measure(size, args.runs), "load_after": _load()}
        (mesh.OUT / f"rules-{size}.json").write_text(json.dumps(result, indent=2))
        raw, rec = result["raw"], result["recorded"]
        speedup = raw["query_stage"]["median"] / rec["query_stage"]["median"]
        print(
            f"{size} services: query stage raw {raw['query_stage']['median']:.3f}s, recorded "
            f"{rec['query_stage']['median']:.3f}s ({speedup:.1f}x); "
            f"exporter raw {raw['wall']['median']:.3f}s ({raw['cpu']['median']:.3f}s CPU), recorded "
            f"{rec['wall']['median']:.3f}s ({rec['cpu']['median']:.3f}s CPU); {result['figures_compared']} figures "
            f"equal; backfill {result['rules_backfill_seconds']:.1f}s",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
