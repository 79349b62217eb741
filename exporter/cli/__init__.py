"""The command line and the composition root: `exporter run | once | report | canary | rollout`.

The only package that builds real clients from Settings (exporter.cli.clients); nothing imports it.
Each command lives in its own module with `register(subparsers)`, whose parsers set
`func=(args, settings) -> exit code`. Exit codes: 0 ok, 1 runtime failure, 2 usage or configuration
error (one line naming the field); `canary analyze` adds 3 for inconclusive.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from exporter import __version__
from exporter.cli import canary, once, report, rollout, rules, run
from exporter.cli.common import EXIT_FAILURE, EXIT_USAGE

if TYPE_CHECKING:
    from exporter.config import Settings

# Start-up is a feature: this module and the command modules import only what building the parser needs
# (`--version` and `--help` load no client library); each command imports its clients when it runs
# (tests/unit/test_startup.py keeps it so).

Command = Callable[[argparse.Namespace, "Settings"], int]
COMMANDS = (run, once, rules, report, canary, rollout)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="exporter",
        description="Export Istio service figures (request rate, success rate, mTLS coverage, p99 latency) "
        "from Prometheus to Datadog, for every Kubernetes Service with the configured label.",
        epilog="Settings come from the environment (EXPORTER_*, DD_*, KUBECONFIG) and an optional YAML "
        "file; see docs/settings.md.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--config", metavar="FILE", help="YAML settings file (or EXPORTER_CONFIG); env wins")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        command.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    import structlog

    from exporter import logs
    from exporter.config import load
    from exporter.errors import ConfigError, ExporterError

    log = structlog.get_logger("exporter.cli")
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
