"""`exporter canary analyze`: flags, thresholds, text/JSON output and the exit code of a verdict.

Exit codes: 0 pass, 1 fail, 3 inconclusive, 4 could not analyse (Prometheus failed after retries: no
verdict), 2 bad flags or names. Flags are validated by the same code as the analysis endpoint's parameters
(the same names in snake_case), so `--workload NAME --at T` reproduces a Flagger webhook's answer.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from typing import TYPE_CHECKING, Any

from exporter.canary import service
from exporter.canary.analysis import FAIL, INCONCLUSIVE, PASS, Thresholds
from exporter.canary.measure import DEFAULT_VERSION_LABEL
from exporter.cli import clients
from exporter.cli.common import duration_flag, number, parse_time, table
from exporter.errors import ConfigError, QueryError
from exporter.logs import redactor
from exporter.query import promql
from exporter.timefmt import utc_text

if TYPE_CHECKING:
    from exporter.config import Settings

EXIT_BY_VERDICT = {PASS: 0, FAIL: 1, INCONCLUSIVE: 3}
EXIT_NOT_ANALYSED = 4
"""Prometheus failed after retries: no verdict could be computed (never confused with fail)."""


def add_analysis_flags(parser: argparse.ArgumentParser, *, label_default: str | None = DEFAULT_VERSION_LABEL) -> None:
    """Flags shared by `canary analyze` and `rollout`: the version label and every threshold. A None
    `label_default` leaves the label to the request (destination_workload with --workload)."""
    d = Thresholds()
    parser.add_argument(
        "--version-label",
        default=label_default,
        help=f"Istio label that tells the subsets apart (default {DEFAULT_VERSION_LABEL}"
        + ("; destination_workload with --workload)" if label_default is None else "; e.g. destination_workload)"),
    )
    parser.add_argument("--min-success-pct", type=float, default=d.min_success_pct, metavar="PCT",
                        help="canary success rate must be at least this (default %(default)s)")  # fmt: skip
    parser.add_argument("--max-p99-ms", type=float, default=d.max_p99_ms, metavar="MS",
                        help="canary p99 latency must be at most this (default %(default)s)")  # fmt: skip
    parser.add_argument("--max-p99-ratio", type=float, default=d.max_p99_ratio, metavar="FACTOR",
                        help="canary p99 at most this factor above stable's (default %(default)s)")  # fmt: skip
    parser.add_argument("--confidence", type=float, default=d.confidence,
                        help="confidence a failure must reach (default %(default)s)")  # fmt: skip
    parser.add_argument("--min-requests", type=int, default=d.min_requests, metavar="N",
                        help="requests each subset needs for a verdict (default %(default)s)")  # fmt: skip


def _flag(field: str) -> str:
    return "--" + field.replace("_", "-")


def thresholds_from(args: argparse.Namespace) -> Thresholds:
    """Thresholds from the flags; ConfigError naming the flag when one is out of range."""
    try:
        promql.check_label_name(args.version_label)
        return service.thresholds_from({name: getattr(args, name) for name in service.THRESHOLDS})
    except service.InvalidRequest as e:
        raise ConfigError(_flag(e.field), e.message) from None
    except ValueError as e:
        raise ConfigError("--version-label", str(e)) from None


def _p_value(test: dict[str, Any]) -> str:
    return "" if not test else "<1e-300" if test["p_value"] <= 0 else f"{test['p_value']:.3g}"


def render_text(doc: dict[str, Any]) -> str:
    when = utc_text(doc["evaluated_at"])
    lines = [
        f"canary analysis of {doc['namespace']}/{doc['service']} by {doc['version_label']}, "
        f"{doc['window']} window ending {when}",
        "",
    ]
    rows: list[tuple[str, ...]] = [("SUBSET", "VERSION", "REQUESTS", "5XX", "SUCCESS %", "P99 MS")]
    for name in ("canary", "stable"):
        s = doc[name]
        rows.append((name, s["version"], f"{s['requests']:,}", f"{s['errors']:,}",
                     number(s["success_rate_pct"], 3), number(s["p99_latency_ms"], 1)))  # fmt: skip
    lines += table(rows, left={0, 1})
    lines.append("")
    rows = [("CHECK", "RESULT", "OBSERVED", "THRESHOLD", "TEST", "P-VALUE")]
    for c in doc["checks"]:
        test = c["test"] or {}
        digits = 0 if c["name"].endswith("_requests") else 3
        rows.append((c["name"], c["result"], number(c["observed"], digits), number(c["threshold"], digits),
                     test.get("name", ""), _p_value(test)))  # fmt: skip
    lines += table(rows, left={0, 1, 4})
    lines += ["", f"verdict: {doc['verdict'].upper()}", *(f"  - {reason}" for reason in doc["reasons"])]
    return "\n".join(lines) + "\n"


def cmd_analyze(args: argparse.Namespace, settings: Settings) -> int:
    duration_flag("--window", args.window)
    values = {name: getattr(args, name) for name in service.FIELDS}
    try:
        request = service.service_request(values)
    except service.InvalidRequest as e:
        raise ConfigError(_flag(e.field), e.message) from None
    at = args.at if args.at is not None else math.floor(time.time())
    try:
        analysis = request.run(clients.prometheus(settings), at=at)
    except QueryError as e:
        print(f"exporter: could not analyse (no verdict): {redactor.scrub(str(e))}", file=sys.stderr)
        return EXIT_NOT_ANALYSED
    doc = analysis.to_dict()
    sys.stdout.write(
        json.dumps(doc, indent=2, ensure_ascii=False) + "\n" if args.output == "json" else render_text(doc)
    )
    return EXIT_BY_VERDICT[analysis.verdict.result]


def register(subparsers: Any) -> None:
    canary = subparsers.add_parser("canary", help="canary analysis: canary vs stable subsets of one service")
    sub = canary.add_subparsers(dest="canary_command", metavar="COMMAND", required=True)
    analyze_parser = sub.add_parser(
        "analyze",
        help="judge a canary against stable: pass (exit 0), fail (1), inconclusive (3), could not analyse (4)",
        description="Judge a canary against the stable version of a service over one window: success rate and p99 "
        "against absolute thresholds, error rate and p99 against stable with significance tests. "
        "Exit 0 pass, 1 fail, 3 inconclusive (too few requests, or no data), 4 could not analyse "
        "(Prometheus failed after retries), 2 bad flags or names.",
    )
    analyze_parser.add_argument("--namespace", required=True)
    scope = analyze_parser.add_mutually_exclusive_group(required=True)
    scope.add_argument("--service", help="the Service whose canary and stable versions are compared")
    scope.add_argument(
        "--workload",
        metavar="NAME",
        help="Flagger's naming instead: canary workload NAME, stable NAME-primary, told apart by "
        "destination_workload (what /v1/flagger/check and /gate analyse for a Canary whose target is NAME)",
    )
    analyze_parser.add_argument("--canary", metavar="VERSION", help="version label value of the canary (required "
                                "with --service; NAME with --workload)")  # fmt: skip
    analyze_parser.add_argument("--stable", metavar="VERSION", help="version label value of stable (required with "
                                "--service; NAME-primary with --workload)")  # fmt: skip
    analyze_parser.add_argument("--window", default="5m", help="PromQL duration measured (default %(default)s)")
    analyze_parser.add_argument("--at", type=parse_time, metavar="TIME", help="end of the window: RFC 3339 or unix s")
    analyze_parser.add_argument("--output", choices=("text", "json"), default="text")
    add_analysis_flags(analyze_parser, label_default=None)
    analyze_parser.set_defaults(func=cmd_analyze)
