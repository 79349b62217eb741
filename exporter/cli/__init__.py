"""The command line and the composition root: `exporter run | once | report | canary | rollout | datadog`.

The only package that builds real clients from Settings (exporter.cli.clients); nothing imports it.
Each command lives in its own module with `register(subparsers)`, whose parsers set
`func=(args, settings) -> exit code`. Exit codes (docs/exit-codes.md): 0 ok, 1 runtime failure, 2 usage
or configuration error (one line naming the field or flag); `canary analyze` adds 3 for inconclusive and
4 for "could not complete" (its 1 is a verdict). Every line printed passes the redactor from the first
byte, and a last-resort handler turns any unexpected exception into one redacted line, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TextIO, cast

from exporter import __version__, logs
from exporter.cli import canary, datadog, once, report, rollout, rules, run
from exporter.cli.common import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_USAGE, OneLineParser, colour_for
from exporter.errors import ConfigError, ExporterError

if TYPE_CHECKING:
    from exporter.config import Settings

# Start-up is a feature: this module and the command modules import only what building the parser needs
# (`--version` and `--help` load no client library); each command imports its clients when it runs
# (tests/unit/test_startup.py keeps it so). exporter.logs is light: the redactor guards even usage errors.

Command = Callable[[argparse.Namespace, "Settings"], int]
COMMANDS = (run, once, rules, report, canary, rollout, datadog)
# The exit code of "could not complete" where a command's 1 is a verdict (the default is EXIT_FAILURE).
COULD_NOT_COMPLETE: dict[Callable[..., int], int] = {canary.cmd_analyze: 4}


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
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
    colours = colour_for(cast(TextIO, sys.stderr))  # a RedactingStream answers isatty() for its stream
    if not isinstance(sys.stderr, logs.RedactingStream):  # every line this process prints is scrubbed
        sys.stdout, sys.stderr = logs.RedactingStream(sys.stdout), logs.RedactingStream(sys.stderr)
    failure = EXIT_FAILURE
    try:
        args = build_parser().parse_args(argv)
        command: Command = args.func
        failure = COULD_NOT_COMPLETE.get(command, EXIT_FAILURE)
        from exporter.config import load  # pydantic-settings: only once a command runs

        settings = load(args.config)
        logs.configure(
            level=settings.log_level,
            secrets=settings.secrets(),
            headers=settings.prometheus_headers,
            fmt=settings.log_format,
            colours=colours,
        )
        if settings.notes():
            import structlog

            for note in settings.notes():
                structlog.get_logger("exporter.config").warning(note)
        return command(args, settings)
    except SystemExit as e:  # argparse: --help, --version (0) and one-line usage errors (2)
        return e.code if isinstance(e.code, int) else EXIT_USAGE
    except ConfigError as e:
        print(f"exporter: config error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except ExporterError as e:  # one line per error: human on a terminal, JSON for machines
        if logs.console:
            print(f"exporter: {logs.redactor.scrub(str(e))}", file=sys.stderr)
        else:
            import structlog

            structlog.get_logger("exporter.cli").error("command failed", command=" ".join(sys.argv[1:2]), error=str(e))
        return failure  # 1, or the command's own 'could not complete' (canary analyze: 4)
    except KeyboardInterrupt:  # called in-process (the program itself ends in exporter.interrupted)
        print("exporter: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as e:  # the last resort: one redacted line, never a traceback
        first = (str(e).splitlines() or [""])[0][:300]
        print(f"exporter: could not complete: {type(e).__name__}: {first}", file=sys.stderr)
        return failure
