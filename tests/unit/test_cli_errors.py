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


@pytest.mark.parametrize(
    "entry", [["-m", "exporter"], ["-c", "import sys; from exporter.cli import main; sys.exit(main())"]]
)
def test_sigint_at_any_moment_is_one_line_and_130(entry: list[str], tmp_path: pytest.TempPathFactory) -> None:
    """From the first line of the package on (exporter/__init__.py installs the handler) to a command
    waiting on an upstream: exactly `exporter: interrupted` and 130, whenever the signal lands."""
    import json
    import socket

    hole = socket.socket()  # a Kubernetes API (and Prometheus) that accepts and never answers: `once` waits on it
    hole.bind(("127.0.0.1", 0))
    hole.listen(16)
    config = tmp_path / "kubeconfig"  # type: ignore[operator]
    config.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "clusters": [{"name": "c", "cluster": {"server": f"http://127.0.0.1:{hole.getsockname()[1]}"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EXPORTER_", "DD_"))} | {"KUBECONFIG": str(config)}
    env["EXPORTER_PROMETHEUS_URL"] = f"http://127.0.0.1:{hole.getsockname()[1]}"  # silent too: no retry warnings
    argv = [sys.executable, *entry, "once"]
    if entry[0] == "-c":  # the console script's shape: `exporter` imports exporter.cli and calls main()
        argv = [sys.executable, "-c", f"import sys; sys.argv[0] = 'exporter'; {entry[1]}", "once"]
    try:
        for delay in (0.25, 0.4, 0.6, 1.0, 1.5):  # after the interpreter's own start-up (up to ~0.15 s under load)
            proc = subprocess.Popen(argv, env=env, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            time.sleep(delay)
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=30)
            assert (proc.returncode, err, out) == (130, "exporter: interrupted\n", ""), delay
    finally:
        hole.close()
