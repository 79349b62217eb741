"""Logs for people and machines: on a terminal a console rendering (colours unless NO_COLOR), JSON lines
otherwise or when asked; a failing command says its error in one line. The terminal is a real pty."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

ANSI = "\x1b["


def run_on_a_terminal(env: dict[str, str], tmp_path: Path) -> tuple[int, str]:
    """`exporter once` with stderr on a pseudo-terminal; its exit code and what the terminal showed."""
    leader, follower = pty.openpty()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "exporter", "once"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=follower,
            timeout=60,
            cwd=tmp_path,
        )
        os.close(follower)
        follower = -1
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the child side is closed and drained
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(leader)
        if follower != -1:
            os.close(follower)
    return proc.returncode, b"".join(chunks).decode().replace("\r\n", "\n")


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """An environment whose Kubernetes configuration is missing: `once` fails at once with a KubeError."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("EXPORTER_", "DD_")) and k != "NO_COLOR"}
    return base | {"KUBECONFIG": str(tmp_path / "missing-kubeconfig"), "TERM": "xterm-256color"}


def test_a_terminal_gets_one_human_line_per_error_in_colour(env: dict[str, str], tmp_path: Path) -> None:
    code, shown = run_on_a_terminal(env, tmp_path)
    lines = shown.strip().splitlines()
    assert code == 1 and lines, shown
    assert lines[-1].startswith("exporter: no Kubernetes configuration")
    assert [line for line in lines if "no Kubernetes configuration" in line] == [lines[-1]]  # once, not twice
    assert not [line for line in lines if line.lstrip().startswith("{")]  # no JSON on a terminal


KUBECONFIG = """apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "http://127.0.0.1:9"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
"""


def test_log_lines_on_a_terminal_are_coloured_unless_no_color(env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "kubeconfig").write_text(KUBECONFIG)  # nothing listens: retries are logged as warnings
    env["KUBECONFIG"] = str(tmp_path / "kubeconfig")
    _, coloured = run_on_a_terminal(env, tmp_path)
    _, plain = run_on_a_terminal(env | {"NO_COLOR": "1"}, tmp_path)
    _, empty = run_on_a_terminal(env | {"NO_COLOR": ""}, tmp_path)  # no-color.org: only a non-empty value counts
    assert ANSI in coloured and "attempt 1/" in coloured
    assert ANSI not in plain and "attempt 1/" in plain
    assert ANSI in empty and "attempt 1/" in empty


def test_json_when_asked_even_on_a_terminal(env: dict[str, str], tmp_path: Path) -> None:
    code, shown = run_on_a_terminal(env | {"EXPORTER_LOG_FORMAT": "json"}, tmp_path)
    lines = shown.strip().splitlines()
    assert code == 1
    error = json.loads(lines[-1])
    assert error["event"] == "command failed" and error["error"].startswith("no Kubernetes configuration")
    assert all(line.startswith("{") for line in lines)
