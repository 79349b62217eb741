"""`exporter canary analyze`: flags, thresholds, text/JSON output and the exit code of a verdict.

Exit codes: 0 pass, 1 fail (or a failed query), 3 inconclusive, 2 bad flags.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from exporter.canary.analysis import FAIL, INCONCLUSIVE, PASS, Thresholds
from exporter.canary.measure import DEFAULT_VERSION_LABEL, report_dict, run_analysis
from exporter.cli import clients
from exporter.cli.common import duration_flag, number, parse_time, table
from exporter.errors import ConfigError
from exporter.model import ServiceRef
from exporter.query import promql

if TYPE_CHECKING:
    from exporter.config import Settings

EXIT_BY_VERDICT = {PASS: 0, FAIL: 1, INCONCLUSIVE: 3}


def add_analysis_flags(parser: argparse.ArgumentParser) -> None:
    """Flags shared by `canary analyze` and `rollout`: the version label and every threshold."""
    d = Thresholds()
    parser.add_argument(
        "--version-label",
        default=DEFAULT_VERSION_LABEL,
        help="Istio label that tells the subsets apart (default %(default)s; e.g. destination_workload)",
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


def thresholds_from(args: argparse.Namespace) -> Thresholds:
    """Thresholds from the flags; ConfigError naming the flag when one is out of range."""
    checks = (
        ("--min-success-pct", 0 <= args.min_success_pct <= 100, "must be within [0, 100]"),
        ("--max-p99-ms", args.max_p99_ms > 0, "must be > 0"),
        ("--max-p99-ratio", args.max_p99_ratio > 0, "must be > 0"),
        ("--confidence", 0 < args.confidence < 1, "must be within (0, 1), e.g. 0.95"),
        ("--min-requests", args.min_requests >= 1, "must be >= 1"),
    )
    for flag, ok, message in checks:
        if not ok:
            raise ConfigError(flag, message)
    try:
        promql.check_label_name(args.version_label)
    except ValueError as e:
        raise ConfigError("--version-label", str(e)) from None
    return Thresholds(
        min_success_pct=args.min_success_pct,
        max_p99_ms=args.max_p99_ms,
        max_p99_ratio=args.max_p99_ratio,
        confidence=args.confidence,
        min_requests=args.min_requests,
    )


def _p_value(test: dict[str, Any]) -> str:
    return "" if not test else "<1e-300" if test["p_value"] <= 0 else f"{test['p_value']:.3g}"


def render_text(doc: dict[str, Any]) -> str:
    when = datetime.fromtimestamp(doc["evaluated_at"], UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
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
    thresholds = thresholds_from(args)
    duration_flag("--window", args.window)
    if args.canary == args.stable:
        raise ConfigError("--canary", "must differ from --stable")
    service = ServiceRef(args.namespace, args.service)
    at = args.at if args.at is not None else math.floor(time.time())
    verdict = run_analysis(
        clients.prometheus(settings),
        service,
        canary=args.canary,
        stable=args.stable,
        at=at,
        window=args.window,
        label=args.version_label,
        thresholds=thresholds,
    )
    doc = report_dict(
        verdict, service, canary=args.canary, stable=args.stable, label=args.version_label, at=at, window=args.window
    )
    sys.stdout.write(
        json.dumps(doc, indent=2, ensure_ascii=False) + "\n" if args.output == "json" else render_text(doc)
    )
    return EXIT_BY_VERDICT[verdict.result]


def register(subparsers: Any) -> None:
    canary = subparsers.add_parser("canary", help="canary analysis: canary vs stable subsets of one service")
    sub = canary.add_subparsers(dest="canary_command", metavar="COMMAND", required=True)
    analyze_parser = sub.add_parser(
        "analyze",
        help="judge a canary against stable: pass (exit 0), fail (1) or inconclusive (3)",
        description="Judge a canary against the stable version of a service over one window: success rate and p99 "
        "against absolute thresholds, error rate and p99 against stable with significance tests. "
        "Exit 0 pass, 1 fail, 3 inconclusive (too few requests, or no data), 2 bad flags.",
    )
    analyze_parser.add_argument("--namespace", required=True)
    analyze_parser.add_argument("--service", required=True)
    analyze_parser.add_argument("--canary", required=True, metavar="VERSION", help="version label value of the canary")
    analyze_parser.add_argument("--stable", required=True, metavar="VERSION", help="version label value of stable")
    analyze_parser.add_argument("--window", default="5m", help="PromQL duration measured (default %(default)s)")
    analyze_parser.add_argument("--at", type=parse_time, metavar="TIME", help="end of the window: RFC 3339 or unix s")
    analyze_parser.add_argument("--output", choices=("text", "json"), default="text")
    add_analysis_flags(analyze_parser)
    analyze_parser.set_defaults(func=cmd_analyze)
