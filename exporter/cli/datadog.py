"""`exporter datadog setup [--dry-run] [--from DIR] [--notify @HANDLE]`: metric metadata, the dashboard and the
monitors in Datadog.

Idempotent and safe to run from CI: a re-run updates what an earlier run created (exporter.sink.datadog_setup).
`--dry-run` prints the validated definitions as JSON and calls nothing. Metadata of a metric Datadog has not
received yet stays pending (one table row each, a warning, exit 0): the next run declares it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from exporter.cli import clients
from exporter.cli.common import EXIT_OK, table

if TYPE_CHECKING:
    from exporter.config import Settings


def cmd_setup(args: argparse.Namespace, settings: Settings) -> int:
    # datadog-api-client loads only here
    from exporter.sink.datadog_setup import DEFINITIONS, PENDING, apply, load_definitions

    definitions = load_definitions(
        args.definitions or DEFINITIONS, prefix=settings.metric_prefix, notify=args.notify or ()
    )
    if args.dry_run:
        sys.stdout.write(json.dumps(definitions.as_json(), indent=2, sort_keys=True) + "\n")
        return EXIT_OK
    client = clients.datadog_setup(settings)
    try:
        done = apply(definitions, client)
    finally:
        client.close()
    rows = [("KIND", "NAME", "ACTION"), *done]
    sys.stdout.write("\n".join(table(rows, left={0, 1, 2})) + "\n")
    pending = sum(1 for _, _, action in done if action == PENDING)
    if pending:
        print(
            f"exporter: warning: metadata of {pending} metric(s) pending until Datadog has received them; "
            "re-run `exporter datadog setup` once the exporter (and the weekly report) have sent them",
            file=sys.stderr,
        )
    return EXIT_OK


def _handle(text: str) -> str:
    if not text.startswith("@") or len(text) < 2 or any(c.isspace() for c in text):
        raise argparse.ArgumentTypeError(f"not a Datadog notification handle (like @slack-mesh): {text!r}")
    return text


def register(subparsers: Any) -> None:
    datadog = subparsers.add_parser("datadog", help="Datadog resources: metric metadata, dashboard, monitors")
    sub = datadog.add_subparsers(dest="datadog_command", metavar="COMMAND", required=True)
    setup = sub.add_parser(
        "setup",
        help="declare metric metadata and create or update the dashboard and monitors (idempotent)",
        description="Declare each metric's type, unit and description, and create or update the dashboard "
        "and monitors shipped with the exporter (deploy/datadog/ in the repository; keyed by "
        "managed-by:mesh-exporter and fixed titles: a re-run updates, never duplicates). Metadata of a "
        "metric Datadog has not received yet is left pending (exit 0, with a warning); re-run to declare it. "
        "Needs DD_API_KEY and DD_APP_KEY.",
    )
    setup.add_argument("--dry-run", action="store_true", help="print the validated definitions; call nothing")
    setup.add_argument(
        "--from",
        dest="definitions",
        type=Path,
        metavar="DIR",
        help="directory holding dashboard.json and monitors.json (default: the ones shipped with the exporter)",
    )
    setup.add_argument(
        "--notify",
        action="append",
        type=_handle,
        metavar="@HANDLE",
        help="a notification handle appended to every monitor's message, e.g. @slack-mesh or "
        "@pagerduty-mesh (repeatable; a re-run overwrites handles added in Datadog's UI, so give them here)",
    )
    setup.set_defaults(func=cmd_setup)
