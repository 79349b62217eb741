"""`exporter once`: one cycle now (or at --at), printed as a table or JSON, optionally submitted."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from exporter.cli import clients
from exporter.cli.common import EXIT_FAILURE, EXIT_OK, colour_for, number, parse_time, table
from exporter.model import CATALOGUE, FigureInfo, Figures, ServiceRef

if TYPE_CHECKING:
    from exporter.config import Settings
    from exporter.export.cycle import CycleResult


def _severity(figures: Figures) -> dict[str, str]:
    """Which cells to highlight: red for failing figures, yellow for ones worth a look."""
    marks: dict[str, str] = {}
    if figures.success_rate_pct is not None and figures.success_rate_pct < 99.0:
        marks["success_rate_pct"] = "red"
    elif figures.success_rate_pct is not None and figures.success_rate_pct < 99.9:
        marks["success_rate_pct"] = "yellow"
    if figures.mtls_coverage_pct is not None and figures.mtls_coverage_pct < 100.0:
        marks["mtls_coverage_pct"] = "red" if figures.mtls_coverage_pct < 50.0 else "yellow"
    return marks


def render_table(
    figures: Mapping[ServiceRef, Figures], *, colour: bool, catalogue: Mapping[str, FigureInfo] = CATALOGUE
) -> str:
    """An aligned table sorted by namespace then service, a column per figure of the catalogue; numbers
    right-aligned, — for no data."""
    rows: list[list[str]] = [["NAMESPACE", "SERVICE", *(info.column for info in catalogue.values())]]
    marks: dict[tuple[int, int], str] = {}
    for ref in sorted(figures):
        f = figures[ref]
        rows.append([ref.namespace, ref.name, *(number(getattr(f, n), i.decimals) for n, i in catalogue.items())])
        severity = _severity(f)
        for column, figure in enumerate(catalogue, start=2):
            if figure in severity:
                marks[(len(rows) - 1, column)] = severity[figure]
    return "\n".join(table(rows, left={0, 1}, marks=marks, colour=colour)) + "\n"


def render_json(result: CycleResult, *, catalogue: Mapping[str, FigureInfo] = CATALOGUE) -> str:
    """The cycle as JSON: every service with each figure of the catalogue (null for no data), and the errors."""
    services = [
        {"namespace": ref.namespace, "service": ref.name, **{n: getattr(result.figures[ref], n) for n in catalogue}}
        for ref in sorted(result.figures)
    ]
    errors = [{"stage": "query", "query": name, "error": str(e)} for name, e in sorted(result.query_errors.items())]
    errors += [
        {
            "stage": "query",
            "query": name,
            "error": f"{count} figure(s) left out: Prometheus answered a non-finite sample",
        }
        for name, count in sorted(result.non_finite.items())
    ]
    if result.submitted:
        errors += [{"stage": "submit", "error": str(e)} for e in result.submitted.errors]
    return json.dumps({"evaluated_at": result.at, "services": services, "errors": errors}, indent=2) + "\n"


def cmd_once(args: argparse.Namespace, settings: Settings) -> int:
    from concurrent.futures import ThreadPoolExecutor

    from exporter.export.cycle import run_cycle

    sink = clients.datadog(settings) if args.submit else None
    tags: tuple[str, ...] = ()
    if sink is not None:  # Datadog's client (and the tag builder beside it) load only to submit
        from exporter.sink.datadog import global_tags

        tags = tuple(global_tags(settings))
    at = args.at if args.at is not None else int(time.time())
    prom = clients.prometheus(settings)
    discovery = clients.discovery(settings)  # before any query: a bad kubeconfig is one line, exit 2
    # The Services are listed while Prometheus evaluates the queries.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="discovery") as pool:
        listing = pool.submit(discovery.list_services)
        result = run_cycle(
            listing.result,
            prom=prom,
            at=at,
            window=settings.rate_window,
            namespaces=settings.namespaces,
            sink=sink,
            tags=tags,
            metric_prefix=settings.metric_prefix,
            source=settings.figure_source,
        )
    if args.output == "json":
        sys.stdout.write(render_json(result))
    else:
        sys.stdout.write(render_table(result.figures, colour=colour_for(sys.stdout)))
        if result.submitted:
            s = result.submitted
            print(f"\nsubmitted {s.points} points in {s.requests} request(s) to Datadog", file=sys.stderr)
    # query and submission errors were logged once each, where they happened (cycle, sink); a figure left
    # out for a non-finite sample is a failed measurement too, never a silent gap in an exit-0 run
    return EXIT_OK if result.ok and not result.non_finite else EXIT_FAILURE


def register(subparsers: Any) -> None:
    once = subparsers.add_parser("once", help="one cycle now (or at --at), printed as a table or JSON")
    once.add_argument("--at", type=parse_time, metavar="TIME", help="evaluation instant: RFC 3339 or unix seconds")
    once.add_argument("--output", choices=("table", "json"), default="table")
    once.add_argument("--submit", action="store_true", help="also send the points to Datadog")
    once.set_defaults(func=cmd_once)
