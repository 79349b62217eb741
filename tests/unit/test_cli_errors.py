"""The last-resort handler: any unexpected exception is one redacted line and the command's
"could not complete" code (1; 4 for canary analyze, whose 1 is a verdict); SIGINT is 130, no traceback."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time

import pytest

from exporter import cli, logs
from exporter.config import Settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("EXPORTER_", "DD_")) or name == "KUBECONFIG":
            monkeypatch.delenv(name)


def crashing(message: str) -> cli.Command:
    def command(args: argparse.Namespace, settings: Settings) -> int:
        raise RuntimeError(message)

    return command


@pytest.mark.parametrize(
    ("argv", "code"),
    [
        (["once"], 1),
        (["canary", "analyze", "--namespace", "n", "--service", "s", "--canary", "v2", "--stable", "v1"], 4),
    ],
)
def test_an_unexpected_exception_is_one_redacted_line_with_could_not_complete(
    argv: list[str], code: int, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    crash = crashing("boom at http://u:Zq~@prometheus:9090 Authorization: Bearer tok-123\nsecond line")
    parser = cli.build_parser()
    original = parser.parse_args

    def parse(args: list[str] | None = None) -> argparse.Namespace:
        ns = original(args)
        if cli.COULD_NOT_COMPLETE.get(ns.func) == 4:
            monkeypatch.setitem(cli.COULD_NOT_COMPLETE, crash, 4)  # the command keeps its code
        ns.func = crash
        return ns

    monkeypatch.setattr(parser, "parse_args", parse)
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    assert cli.main(argv) == code
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert err.startswith("exporter: could not complete: RuntimeError: boom")
    assert "Zq~" not in err and "tok-123" not in err and logs.REDACTED in err


def test_canary_analyze_could_not_complete_is_4_never_a_verdict() -> None:
    from exporter.cli import canary

    assert cli.COULD_NOT_COMPLETE[canary.cmd_analyze] == 4
    assert 4 not in canary.EXIT_BY_VERDICT.values()


def test_sigint_while_loading_is_one_line_and_130() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "exporter", "once"], stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    time.sleep(0.15)  # inside the imports
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert "Traceback" not in err, err
    assert proc.returncode in (130, 1, 2), err  # 130 when interrupted; 1/2 if it got past loading first
    if proc.returncode == 130:
        assert err.strip() == "exporter: interrupted"
