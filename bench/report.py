"""bench/RESULTS.md and the chart, from the raw results of one `make bench` run (bench.run)."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from bench.stats import ratio
from exporter.sink.datadog import MAX_BATCH_BYTES

Results = dict[str, Any]
WHO = ("floor", "warm", "cold", "baseline")
LABELS = {
    "floor": "floor (4 grouped PromQL, plain HTTP)",
    "warm": "exporter, warm cycle",
    "cold": "exporter once --submit (cold)",
    "baseline": "baseline: 3 PromQL + 1 Datadog request per service",
}
INTERVAL = 30.0


def _s(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def _x(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}×"


def _wall(entry: dict[str, Any]) -> str:
    wall = entry["wall"]
    text = f"{_s(wall['median'])} ({_s(wall['low'])}–{_s(wall['high'])}, n={wall['runs']})"
    if entry.get("extrapolated"):
        text = f"{_s(wall['median'])}* ({entry['services_done']} services in {_s(entry['measured_wall']['median'])})"
    return text


def _row(who: str, entry: dict[str, Any], services: int) -> str:
    if who == "baseline":
        promql, dd = 3 * services, services
        sent = entry["datadog_bytes_per_service"] * services
    else:
        promql, dd = entry["promql_requests"], entry.get("datadog_requests", 0)
        sent = entry.get("datadog_bytes", 0.0)
    rss = entry["peak_rss_mb"]["median"] if isinstance(entry["peak_rss_mb"], dict) else entry["peak_rss_mb"]
    cpu = entry["cpu"]["median"]
    return (
        f"| {LABELS[who]} | {_wall(entry)} | {_s(cpu)} | {rss:.0f} MB | {promql:,} | {dd:,} | {sent / 1024:,.0f} KiB |"
    )


def ratios(size: Results, network: str) -> dict[str, float | None]:
    """The ratios the targets are about, for one size and network."""
    d = size[network]
    floor, warm, cold = (d[k]["wall"]["median"] for k in ("floor", "warm", "cold"))
    return {
        # against the floor runs that alternated with the warm cycles in the same process (same load)
        "warm_over_floor": ratio(warm, d["warm"]["paired_floor"]["median"]),
        "cold_minus_floor": cold - floor,
        "baseline_over_warm": ratio(d["baseline"]["wall"]["median"], warm),
    }


def _table(size: Results) -> list[str]:
    n = size["services"]
    lines = [f"## {n:,} services", ""]
    listed = size["loopback"]["warm"]["discover"]
    lines.append(
        f"{size['samples']:,} samples in Prometheus; {size['loopback']['warm']['with_traffic']:,} services with "
        f"traffic; listing the {n:,} Services (the daemon's discovery job, outside the cycle) took "
        f"{listed['kube_requests']} Kubernetes API page(s), {_s(listed['wall'])}."
    )
    for network in ("loopback", "delayed"):
        d = size[network]
        lines += [
            "",
            f"**{network}**",
            "",
            "| | wall: median (min–max, runs) | CPU | peak RSS | PromQL requests | Datadog requests | Datadog bytes |",
            "|---|---|---|---|---|---|---|",
        ]
        lines += [_row(who, d[who], n) for who in WHO]
        r = ratios(size, network)
        w = d["warm"]
        startup = d["cold"].get("startup")
        lines += [
            "",
            f"exporter ÷ floor (warm, against the alternating floor runs: {_s(w['paired_floor']['median'])}): "
            f"**{_x(r['warm_over_floor'])}**; cold − floor: **{_s(r['cold_minus_floor'])}**; "
            f"baseline ÷ exporter (warm): **{_x(r['baseline_over_warm'])}**. Warm cycle, median by stage: query "
            f"{_s(w['query']['median'])} (4 requests + decoding, most points sent meanwhile), then the last "
            f"hand-over {_s(w['submit']['median'])} ({w['points']:,} points in all)."
            + f" A process's first cycle: {_s(w['first_cycle']['wall'])} ({_s(w['first_cycle']['cpu'])} CPU)."
            + (f" Start-up alone (`exporter --version`): {_s(startup['wall']['median'])}." if startup else ""),
        ]
    return lines


def targets(results: Results) -> list[tuple[str, bool, str]]:
    """(target, met, measured) for every target of the issue that this run can judge."""
    sizes = {s["services"]: s for s in results["sizes"]}
    nets = ("loopback", "delayed")
    out: list[tuple[str, bool, str]] = []
    worst = max((ratios(s, n)["warm_over_floor"] or math.inf, s["services"], n) for s in sizes.values() for n in nets)
    measured = f"worst {worst[0]:.2f}× ({worst[1]:,}, {worst[2]})"
    out.append(("warm cycle ≤ 1.5 × floor at every size", worst[0] <= 1.5, measured))
    cold = max((ratios(s, n)["cold_minus_floor"] or 0.0, s["services"], n) for s in sizes.values() for n in nets)
    measured = f"worst floor + {_s(cold[0])} ({cold[1]:,}, {cold[2]})"
    out.append(("cold `exporter once` ≤ floor + 1 s", cold[0] <= 1.0, measured))
    if 527 in sizes:
        worst = max(ratios(sizes[527], n)["cold_minus_floor"] or 0.0 for n in nets)
        out.append(("527: cold `exporter once` ≤ floor + 0.35 s", worst <= 0.35, f"floor + {_s(worst)}"))
    startups = [s["loopback"]["cold"].get("startup") for s in sizes.values()]
    if any(startups):
        slowest = max(x["wall"]["median"] for x in startups if x)
        out.append(("`exporter --version` ≤ 0.25 s", slowest <= 0.25, _s(slowest)))
    if 527 in sizes:
        b = ratios(sizes[527], "delayed")["baseline_over_warm"] or 0.0
        out.append(("527 services with delays: warm ≥ 10 × faster than the baseline", b >= 10, f"{b:.1f}×"))
    if 10_000 in sizes:
        big = sizes[10_000]
        for n in nets:
            base, warm = big[n]["baseline"], big[n]["warm"]
            out.append(
                (
                    f"10,000 ({n}): the baseline cannot keep a 30 s interval, the exporter can",
                    base["wall"]["median"] > INTERVAL and warm["wall"]["median"] < INTERVAL,
                    f"baseline {_s(base['wall']['median'])}"
                    + (f" (reached {base['services_done']:,} services in 30 s)" if base["extrapolated"] else "")
                    + f", exporter {_s(warm['wall']['median'])}",
                )
            )
            out.append((f"10,000 ({n}): warm cycle < 10 s", warm["wall"]["median"] < 10, _s(warm["wall"]["median"])))
        worst = max(ratios(big, n)["warm_over_floor"] or math.inf for n in nets)
        out.append(("10,000: warm cycle ≤ 1.15 × floor (median of alternating runs)", worst <= 1.15, f"{worst:.2f}×"))
        cpu = max(big[n]["warm"]["cpu"]["median"] for n in nets)
        out.append(("10,000: exporter CPU per warm cycle ≤ 0.5 s", cpu <= 0.5, _s(cpu)))
        rss = max(max(big[n]["warm"]["peak_rss_mb"], big[n]["cold"]["peak_rss_mb"]["median"]) for n in nets)
        out.append(("10,000: peak RSS < 200 MB", rss < 200, f"{rss:.0f} MB (warm process, or median cold process)"))
        if 527 in sizes:
            small, large = sizes[527]["loopback"]["warm"]["promql_requests"], big["loopback"]["warm"]["promql_requests"]
            out.append(("10,000: as many PromQL requests per cycle as at 527", small == large, f"{large} vs {small}"))
        w = big["loopback"]["warm"]
        needed = math.ceil(w["datadog_decoded_bytes"] / MAX_BATCH_BYTES) + 1  # two hand-overs a cycle
        out.append(
            (
                "10,000: Datadog requests only as many as the payload limit and the two hand-overs need",
                w["datadog_requests"] <= needed,
                f"{w['datadog_requests']} request(s) for {w['datadog_decoded_bytes'] / 1e6:.2f} MB of JSON "
                f"(limit {MAX_BATCH_BYTES / 1e6:.0f} MB a request, in two hand-overs: at most {needed})",
            )
        )
    return out


METHOD = """\
## How it is measured

- **Mesh**: `sandbox.meshsim.scaled_mesh(n, seed=7)` (every Service migrated, ~40 per namespace, names
  repeating across namespaces, varied callers, versions, errors, mTLS and latency), destination-reported
  series only (the exporter never reads the source copies), {span:.0f} minutes of samples every {step:.0f} s
  ending at the evaluation instant (the {window} rate window plus a margin), backfilled by promtool into one
  TSDB block (a query over two adjacent blocks merges every series twice: measured 1.5–2× slower) and cached
  under `bench/out/`, keyed by the parameters and the generator's source.
- **Prometheus**: Debian's, one server per size on loopback. **Kubernetes API and Datadog intake**: the
  project's sandbox servers (`FakeKubeAPI`, `FakeIntake`), in the benchmark's own process; a fresh intake
  per measurement, and every point it accepted is counted.
- **Networks**: *loopback* goes direct; *delayed* goes through `bench/proxy.py`, which releases every byte
  towards the server 1 ms late (Prometheus and the Kubernetes API, as in a cluster) or 30 ms late (the
  Datadog intake, as over a WAN): each request/response round trip pays the delay once. Connection set-up
  and bandwidth are not modelled (both sides keep their connections alive).
- **floor**: the four grouped queries of `promql.figure_queries`, sent concurrently over plain HTTP
  keep-alive connections (`http.client`, four threads), answers read but not decoded: what any exporter built
  on these queries must pay at least. One warm-up, then {runs} runs.
- **exporter, warm**: one process builds its clients from the settings as the daemon does
  (`clients.prometheus/datadog/discovery`), lists the Services once (pages of 500; the daemon's discovery job,
  which keeps the list between its runs), then runs pipelined cycles, `cycle.run_cycle(..., sink=...)`: the
  daemon's `measure_cycle` and delivery worker. The first cycle is discarded; each of the {runs} measured cycles
  follows one floor run in the same process, and *warm ÷ floor* divides the two medians, so that the load
  the machine had at the time weighs on both. CPU is the process's CPU time (all threads) over the cycle;
  peak RSS is the process's high-water mark (VmHWM) after every cycle.
- **exporter once --submit (cold)**: {runs} processes `exporter once --at T --submit --output json`, timed
  from spawn to exit; CPU and peak RSS from `wait4` (through a small launcher, so that the figure is the
  exporter's own and not inherited from the benchmark's process). Start-up alone is `exporter --version`.
- **baseline** (bench only, never a mode of the exporter): for every service in turn, three instant queries
  filtered to that service (success % and mTLS % as PromQL ratios, p99 by `histogram_quantile`) with
  `requests`, then one deflated POST of its points to the intake. One pass; from 2,000 services the pass
  stops after 30 s (the daemon's interval) and the full cycle is extrapolated linearly from the services it
  reached (marked \\*). It is generous: plain `requests` instead of datadog-api-client, and no request-rate
  figure.
- The Prometheus timeout is raised to 120 s (`EXPORTER_PROMETHEUS_TIMEOUT_SECONDS`): at 10,000 services the
  p99 query alone can take longer than the default 10 s on this machine.
"""

FINDINGS = """\
## Where the time goes, and what was changed

On 2026-11-29 (issue 15), measured per thread on the 10,000-service mesh with the clients built once
(`time.thread_time` around the query threads, the delivery worker and the cycle's own thread):

- **The cycle no longer waits for discovery or for the slowest query to send**: the daemon measures the
  Service list its discovery job keeps (this benchmark lists it once, timed apart), and the figures the
  answers allow once only the p99 query is outstanding are handed to the delivery worker at once; the
  cycle then waits only for the last hand-over (the *submit* stage: ~0.1 s at 10,000 services, against
  1.1 s of discovery and submission after the queries before).
- **Exporter CPU per warm cycle at 10,000 services from ~1.35 s to ~0.45 s** (same machine, same day):
  the cyclic garbage collector is paused during a cycle (its full collections over the cycle's ~300,000
  short-lived objects cost ~0.15 s); points are encoded once by string formatting, each Service's tags
  JSON-encoded once, and posted as bytes through the Datadog client's connection pool (the client's REST
  layer `json.dumps` a dict again: ~0.35 s); grouping the answers by label takes C-level passes in the
  common case; the daemon no longer builds a `Figures` object per service. What remains, per cycle:
  reading and parsing ~5 MB of answers in the query threads (~0.13 s), the figures and 40,000 points in
  the cycle's thread (~0.2 s), encoding and deflating 7.8 MB of series in the delivery worker (~0.12 s:
  deflated at the fastest level whenever the body still fits Datadog's 512,000 bytes).

Before, on 2026-11-26:

Profiled with `python -m bench.profile 10000` (cProfile of one warm cycle) and the warm cycles of
`python -m bench.run --sizes 10000 --modes warm`, on this machine on 2026-11-26 between 03:50 and 04:35 UTC
(before the run above):

- **Prometheus is the floor, and the p99 query is most of it**: `histogram_quantile` over the ~500,000
  bucket series of 10,000 services took 9–24 s alone, the three rate queries 0.4–1 s each (the spread is
  the load other engineers put on the two cores). At that size a real deployment would precompute the
  bucket rates with a recording rule; the exporter's queries and request count stay the same.
- **The exporter's own CPU per warm cycle at 10,000 services went from 1.49 s to 1.07 s** (loopback; 1.41 s
  to 1.03 s delayed; commit f0e2f79): datadog-api-client's `MetricsApi.submit_metrics` first walked every
  value of the body through the client's generic model serializer (`data_to_dict`, 440,000 calls: ~0.45 s
  for 40,000 points); the series now go through the same client's REST layer. What remains: decoding the
  four answers (~1.3 MB of JSON each, ~0.08 s each), building the 40,000 points and their JSON (~0.2 s),
  discovery (20 pages of 500 Services: ~0.1 s of JSON), deflate (0.04 s); `vector_by` and the figures take
  ~0.05 s together.
- **Every start lost ~0.4 s building ~250 pydantic models** the first time kubernetes v37's `CoreV1Api` was
  touched, for a discovery that only reads namespace and name from raw JSON pages. Discovery now sends the
  same GETs through the `ApiClient` (commit fccb9f4): `exporter once --submit` at 527 services went from
  1.42 s wall, 1.09 s CPU, 83 MB to 1.24 s, 0.72 s, 63 MB (loopback; 1.58 s to 1.21 s with delays).
- **Start-up** (`exporter --version`: the interpreter and every import) is most of a cold run at small sizes.
  The imports the command needs (kubernetes, datadog-api-client, prometheus-api-client, pydantic,
  structlog) are the bulk; `import kubernetes` loads every sub-package, and in this development virtualenv
  its dynamic client also imports `kubernetes-validate` and `jsonschema` (~0.15 s), which the container
  image (built from the locked runtime dependencies only) does not install.
- **Two benchmark artefacts were found and removed**: (1) the sandbox servers answered with Nagle's
  algorithm on, so every keep-alive request after the first waited 40 ms for a delayed ACK (every
  discovery page, every Datadog request, and 40 ms per service for the baseline); they now send without it,
  as Go servers (Datadog, Kubernetes) do (commit afec5a3). (2) A child's `ru_maxrss` on Linux includes the
  memory its parent had when it forked: a process started from the benchmark reported the benchmark's
  300 MB; peak RSS is now each process's own high-water mark.
- The warm cycle's *submit* stage includes the time the sandbox intake (pure Python, in the benchmark's
  process, sharing the two cores) takes to decompress and decode 7 MB of JSON before answering 202; the
  exporter's own share is in its CPU column.
"""


def _overheads(results: Results) -> str:
    """Per size and network: warm − its alternating floor, and the stage a cycle has after its queries."""
    parts = []
    for size in results["sizes"]:
        for network in ("loopback", "delayed"):
            w = size[network]["warm"]
            extra = w["wall"]["median"] - w["paired_floor"]["median"]
            parts.append(
                f"{size['services']:,} {network}: {_s(extra)} (last hand-over {_s(w['submit']['median'])}, "
                f"floor {_s(w['paired_floor']['low'])}–{_s(w['paired_floor']['high'])})"
            )
    return "; ".join(parts)


WHY = {
    "warm cycle ≤ 1.5": "The floor is Prometheus's work alone. A warm cycle also reads and decodes four answers, "
    "builds and encodes the points, and waits for its last hand-over to reach the intake (30 ms away in the "
    "delayed runs; the sandbox intake decodes the payload in Python on the same two cores before it "
    "answers). Cycle minus the floor runs that alternated with it: {overheads}.",
    "10,000: warm cycle ≤ 1.15": "The exporter's own CPU ({cpu_10k} a cycle) shares the two cores with "
    "Prometheus while it evaluates the p99 query, and the last hand-over follows the queries. Cycle minus "
    "the floor runs that alternated with it: {overheads}.",
    "10,000: exporter CPU": "{cpu_10k} a cycle: reading and parsing ~5 MB of answers (~0.13 s in the query "
    "threads), the figures and 40,000 points (~0.2 s), encoding and deflating 7.4 MB of series (~0.18 s in the "
    "delivery worker); see *Where the time goes* below.",
    "527: cold": "A cold run is start-up (`exporter --version`: {startup} here; `once --submit` also imports "
    "pydantic-settings, kubernetes, datadog-api-client and prometheus-api-client), the kubeconfig, loaded "
    "before any query so that a bad one is one line and exit 2, then a first cycle, of which only the "
    "listing of Services overlaps the queries. SCALE.md has the import costs.",
    "cold `exporter once`": "A cold run is start-up (`exporter --version`: the interpreter and the imports the "
    "command needs, {startup} here) plus a first cycle, which lists the Services (20 pages at 10,000) and "
    "costs what a warm cycle costs above the floor.",
    "527 services with delays": "The baseline's cost is one intake round trip (30 ms) and three Prometheus round "
    "trips per service; the exporter's cycle is dominated by the grouped p99 query.",
    "10,000 (loopback): warm": "Prometheus alone (the floor, mostly the p99 query over ~500,000 bucket series) "
    "takes {floor_10k} on this machine.",
    "10,000 (delayed): warm": "Prometheus alone (the floor, mostly the p99 query over ~500,000 bucket series) "
    "takes {floor_10k} on this machine.",
}


def _why(results: Results, failed: list[str]) -> list[str]:
    sizes = {s["services"]: s for s in results["sizes"]}
    startups = [s["loopback"]["cold"].get("startup") for s in results["sizes"]]
    big = sizes.get(10_000)
    values = {
        "startup": _s(max(x["wall"]["median"] for x in startups if x)) if any(startups) else "—",
        "floor_10k": _s(big["loopback"]["floor"]["wall"]["median"]) if big else "—",
        "cpu_10k": _s(max(big[n]["warm"]["cpu"]["median"] for n in ("loopback", "delayed"))) if big else "—",
        "overheads": _overheads(results),
    }
    lines = []
    for name in failed:
        reason = next((text for prefix, text in WHY.items() if name.startswith(prefix)), None)
        if reason:
            lines.append(f"- **{name}**: {reason.format(**values)}")
    return ["", "### Not met, and why", "", *lines] if lines else []


def summary(results: Results) -> str:
    """One line per size: median wall times on both networks, and the two ratios."""
    lines = [
        "| services | network | floor | exporter warm | exporter cold | baseline | warm ÷ floor | baseline ÷ warm |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for size in results["sizes"]:
        for network in ("loopback", "delayed"):
            d, r = size[network], ratios(size, network)
            base = _s(d["baseline"]["wall"]["median"]) + ("*" if d["baseline"]["extrapolated"] else "")
            lines.append(
                f"| {size['services']:,} | {network} | {_s(d['floor']['wall']['median'])} | "
                f"{_s(d['warm']['wall']['median'])} | {_s(d['cold']['wall']['median'])} | {base} | "
                f"{_x(r['warm_over_floor'])} | {_x(r['baseline_over_warm'])} |"
            )
    return "\n".join(lines) + "\n"


def markdown(results: Results, *, chart: str, raw: str = "results.json") -> str:
    m = results["machine"]
    lines = [
        "# Benchmark results",
        "",
        f"Produced by one `make bench` run started {results['started']} (UTC), which took "
        f"{results['seconds'] / 60:.1f} minutes, generating the meshes included "
        f"({sum(s['build_seconds'] for s in results['sizes']):.0f} s; 0 means they were cached). "
        f"Every number in the tables comes from that run; the raw numbers are in [{Path(raw).name}]({raw}) "
        "(`python -m bench.report` renders this page and the chart from them again).",
        "",
        f"**Machine**: {m['cpus']} CPUs ({m['cpu_model']}), {m['memory_gb']} GB RAM, Linux {m['kernel']}, "
        f"Python {m['python']}, {m['prometheus']}. Load average (1, 5, 15 min) before the run "
        f"{', '.join(f'{x:.2f}' for x in results['load_before'])}, after "
        f"{', '.join(f'{x:.2f}' for x in results['load_after'])}: other engineers' test runs shared these two "
        "cores during the session, so absolute times are pessimistic and vary from run to run.",
        "",
        f"![cycle time against service count]({chart})",
        "",
        summary(results),
        "\\* extrapolated from one pass cut at 30 s (see *baseline* below).",
        "",
        "## Targets",
        "",
        "| target | met | measured |",
        "|---|---|---|",
    ]
    judged = targets(results)
    lines += [f"| {name} | {'yes' if met else '**no**'} | {measured} |" for name, met, measured in judged]
    lines += _why(results, [name for name, met, _ in judged if not met])
    for size in results["sizes"]:
        lines += ["", *_table(size)]
    lines += [
        "",
        "The recording-rule mode, start-up and a cost model for 50,000 and 100,000 services were measured in "
        "separate runs: [SCALE.md](SCALE.md).",
        "",
        METHOD.format(span=results["span"] / 60, step=results["step"], window=results["window"], runs=results["runs"]),
        FINDINGS,
    ]
    return "\n".join(lines)


def chart(results: Results, path: Path) -> None:
    """Cycle time against service count, log-log, one panel per network."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), sharey=True)
    xs = [s["services"] for s in results["sizes"]]
    for ax, network in zip(axes, ("loopback", "delayed"), strict=True):
        for who, style in zip(WHO, ("kx--", "C0o-", "C1s-", "C3^-"), strict=True):
            ys = [s[network][who]["wall"]["median"] for s in results["sizes"]]
            ax.plot(xs, ys, style, label=LABELS[who])
        guessed = [s for s in results["sizes"] if s[network]["baseline"]["extrapolated"]]
        if guessed:
            gx = [s["services"] for s in guessed]
            gy = [s[network]["baseline"]["wall"]["median"] for s in guessed]
            ax.plot(gx, gy, "^", color="white", markeredgecolor="C3", label="baseline, extrapolated from a 30 s pass")
        ax.axhline(INTERVAL, color="grey", linewidth=0.8, linestyle=":")
        ax.text(xs[0], INTERVAL * 1.1, "30 s interval", color="grey", fontsize=8)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(xs, [f"{x:,}" for x in xs])
        ax.set_xlabel("services")
        ax.set_title({"loopback": "plain loopback", "delayed": "1 ms to Prometheus, 30 ms to Datadog"}[network])
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("cycle wall time, median (s)")
    axes[0].legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    """Render RESULTS.md and the chart again from a run's raw results (no measurement)."""
    import argparse
    import json

    here = Path(__file__).resolve().parent
    parser = argparse.ArgumentParser(prog="python -m bench.report", description=main.__doc__)
    parser.add_argument("raw", type=Path, nargs="?", default=here / "results.json")
    parser.add_argument("--results", type=Path, default=here / "RESULTS.md")
    parser.add_argument("--chart", type=Path, default=here / "cycle-time.png")
    parser.add_argument("--summary", action="store_true", help="print only the summary table")
    args = parser.parse_args(argv)
    results = json.loads(args.raw.read_text())
    if args.summary:
        print(summary(results), end="")
        return 0
    relative_raw = os.path.relpath(args.raw, args.results.parent)
    args.results.write_text(markdown(results, chart=args.chart.name, raw=relative_raw))
    chart(results, args.chart)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
