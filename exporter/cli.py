"""Command line: `exporter run | once | …`, argument parsing, exit codes and output rendering.

Exit codes: 0 ok, 1 runtime failure, 2 usage or configuration error (one line naming the field).
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TextIO

import structlog

from exporter import __version__, clients, logs
from exporter.cycle import CycleResult, run_cycle
from exporter.errors import ConfigError, ExporterError
from exporter.model import Figures, ServiceRef
from exporter.settings import Settings, load

log = structlog.get_logger("exporter.cli")

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2

Command = Callable[[argparse.Namespace, Settings], int]


def parse_time(text: str) -> int:
    """RFC 3339 or unix seconds → whole unix seconds (argparse type)."""
    try:
        return math.floor(float(text))
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not RFC 3339 or unix seconds: {text!r} (e.g. 2026-11-26T06:00:00Z or 1795500000)"
        ) from None
    if parsed.tzinfo is None:
        raise argparse.ArgumentTypeError(f"RFC 3339 time needs an offset or Z: {text!r}")
    return math.floor(parsed.timestamp())


# ---------------------------------------------------------------------------------------------- once
def _fmt(value: float | None, digits: int) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def _colour(stream: TextIO) -> bool:
    return stream.isatty() and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb"


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


_COLOURS = {"red": "\033[31m", "yellow": "\033[33m"}
_COLUMNS = (
    ("NAMESPACE", None, 0),
    ("SERVICE", None, 0),
    ("REQ/S", "request_rate", 2),
    ("SUCCESS %", "success_rate_pct", 2),
    ("MTLS %", "mtls_coverage_pct", 1),
    ("P99 MS", "p99_latency_ms", 1),
)


def render_table(figures: dict[ServiceRef, Figures], *, colour: bool) -> str:
    """An aligned table sorted by namespace then service; numbers right-aligned, — for no data."""
    rows: list[tuple[list[str], dict[str, str]]] = []
    for ref in sorted(figures):
        f = figures[ref]
        cells = [ref.namespace, ref.name]
        cells += [_fmt(getattr(f, attr), digits) for _, attr, digits in _COLUMNS[2:] if attr]
        rows.append((cells, _severity(f)))
    header = [name for name, _, _ in _COLUMNS]
    widths = [max([len(h)] + [len(cells[i]) for cells, _ in rows]) for i, h in enumerate(header)]

    def line(cells: list[str], marks: dict[str, str]) -> str:
        out = []
        for i, cell in enumerate(cells):
            text = cell.ljust(widths[i]) if i < 2 else cell.rjust(widths[i])
            attr = _COLUMNS[i][1]
            if colour and attr in marks:
                text = f"{_COLOURS[marks[attr]]}{text}\033[0m"
            out.append(text)
        return "  ".join(out).rstrip()

    lines = [line(header, {})] + [line(cells, marks) for cells, marks in rows]
    return "\n".join(lines) + "\n"


def render_json(result: CycleResult) -> str:
    services = [
        {"namespace": ref.namespace, "service": ref.name, **result.figures[ref].values()}
        for ref in sorted(result.figures)
    ]
    errors = [{"stage": "query", "query": name, "error": str(e)} for name, e in sorted(result.query_errors.items())]
    if result.submitted:
        errors += [{"stage": "submit", "error": str(e)} for e in result.submitted.errors]
    return json.dumps({"evaluated_at": result.at, "services": services, "errors": errors}, indent=2) + "\n"


def cmd_once(args: argparse.Namespace, settings: Settings) -> int:
    sink = clients.datadog(settings) if args.submit else None
    at = args.at if args.at is not None else int(time.time())
    services = clients.discovery(settings).list_services()
    result = run_cycle(
        services,
        prom=clients.prometheus(settings),
        at=at,
        window=settings.rate_window,
        namespaces=settings.namespaces,
        sink=sink,
        tags=settings.tags,
    )
    if args.output == "json":
        sys.stdout.write(render_json(result))
    else:
        sys.stdout.write(render_table(result.figures, colour=_colour(sys.stdout)))
        if result.submitted:
            s = result.submitted
            print(f"\nsubmitted {s.points} points in {s.requests} request(s) to Datadog", file=sys.stderr)
    for name, query_error in result.query_errors.items():
        print(f"exporter: {name} query failed: {query_error}", file=sys.stderr)
    for submit_error in result.submitted.errors if result.submitted else []:
        print(f"exporter: submission failed: {submit_error}", file=sys.stderr)
    return EXIT_OK if result.ok else EXIT_FAILURE


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    from exporter.daemon import Daemon  # the scheduler and HTTP server load only for the daemon

    return Daemon.from_settings(settings).run()


# -------------------------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="exporter",
        description="Export Istio service figures (request rate, success rate, mTLS coverage, p99 latency) "
        "from Prometheus to Datadog, for every Kubernetes Service with the configured label.",
        epilog="Settings come from the environment (EXPORTER_*, DD_*, KUBECONFIG) and an optional YAML "
        "file; see README.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--config", metavar="FILE", help="YAML settings file (or EXPORTER_CONFIG); env wins")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run = sub.add_parser("run", help="the daemon: a cycle every interval, /healthz /readyz /metrics")
    run.set_defaults(func=cmd_run)

    once = sub.add_parser("once", help="one cycle now (or at --at), printed as a table or JSON")
    once.add_argument("--at", type=parse_time, metavar="TIME", help="evaluation instant: RFC 3339 or unix seconds")
    once.add_argument("--output", choices=("table", "json"), default="table")
    once.add_argument("--submit", action="store_true", help="also send the points to Datadog")
    once.set_defaults(func=cmd_once)

    for register in _extensions():
        register(sub)
    return parser


# Feature modules that add commands: each has `register(subparsers)`, whose parsers set
# `func=(args, settings) -> exit code`. Add a module here to add its commands.
EXTENSIONS: tuple[str, ...] = ("report", "canary_cmd", "rollout")


def _extensions() -> list[Callable[[Any], None]]:
    return [importlib.import_module(f"exporter.{name}").register for name in EXTENSIONS]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = load(args.config)
    except ConfigError as e:
        print(f"exporter: config error: {e}", file=sys.stderr)
        return EXIT_USAGE
    logs.configure(level=settings.log_level, secrets=settings.secrets())
    if not isinstance(sys.stderr, logs.RedactingStream):  # every line this process prints is scrubbed
        sys.stdout, sys.stderr = logs.RedactingStream(sys.stdout), logs.RedactingStream(sys.stderr)
    command: Command = args.func
    try:
        return command(args, settings)
    except ConfigError as e:
        print(f"exporter: config error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except ExporterError as e:
        log.error("command failed", command=args.command, error=str(e))
        print(f"exporter: {logs.redactor.scrub(str(e))}", file=sys.stderr)
        return EXIT_FAILURE
