"""`exporter datadog setup [--dry-run] [--from DIR]`: metric metadata, the dashboard and the monitors in Datadog.

Idempotent and safe to run from CI: a re-run updates what an earlier run created (exporter.sink.datadog_setup).
`--dry-run` prints the validated definitions as JSON and calls nothing.
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
    from exporter.sink.datadog_setup import DEFINITIONS, apply, load_definitions  # datadog-api-client: only here

    definitions = load_definitions(args.definitions or DEFINITIONS, prefix=settings.metric_prefix)
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
    return EXIT_OK


def register(subparsers: Any) -> None:
    datadog = subparsers.add_parser("datadog", help="Datadog resources: metric metadata, dashboard, monitors")
    sub = datadog.add_subparsers(dest="datadog_command", metavar="COMMAND", required=True)
    setup = sub.add_parser(
        "setup",
        help="declare metric metadata and create or update the dashboard and monitors (idempotent)",
        description="Declare each metric's type, unit and description, and create or update the dashboard "
        "and monitors of deploy/datadog/ (keyed by managed-by:mesh-exporter and fixed titles: a re-run "
        "updates, never duplicates). Needs DD_API_KEY and DD_APP_KEY.",
    )
    setup.add_argument("--dry-run", action="store_true", help="print the validated definitions; call nothing")
    setup.add_argument(
        "--from",
        dest="definitions",
        type=Path,
        metavar="DIR",
        help="directory holding dashboard.json and monitors.json (default: the repository's deploy/datadog)",
    )
    setup.set_defaults(func=cmd_setup)
