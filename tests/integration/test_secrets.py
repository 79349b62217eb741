"""Secrets never leave the process: every command, success and failure paths, debug logging on,
with DD_API_KEY, DD_APP_KEY, a Kubernetes bearer token, a Prometheus Authorization header and a
password in the Prometheus URL (and planted shapes: short, with a newline, CR/LF). Searched, for every
secret in its raw, escaped (repr/JSON) and base64 forms and the base64 of each user:password: stdout and
stderr of every command, files written with --out, /metrics, the spool and whatever it sets aside, and
the series and event bodies the intake received; also under upstreams whose error bodies echo them."""

from __future__ import annotations

import argparse
import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from exporter.cli import build_parser
from sandbox.intake import FakeIntake, Reply
from sandbox.kubeapi import FakeKubeAPI
from sandbox.meshsim import kube_service_manifests
from sandbox.proxy import Fault, FaultProxy
from tests.support.procs import free_port, wait_for
from tests.support.prom import DemoProm

API_KEY = "dd-api-secret-7f3a9c1e5b"
APP_KEY = "dd-app-secret-2d8e4b6a0c"
KUBE_TOKEN = "kube-token-secret-91ab27cd"
PROM_TOKEN = "prom-bearer-secret-55ef10aa"
PROM_PASSWORD = "prom-password-secret-3344"
SHORT_PASSWORD = "Zq~"  # under the 4 characters value-matching needs: only the structural masks protect it
NEWLINE_KEY = "dd-newline-key-6c1f0e9d"  # as `echo key | base64` puts it into a Secret: with a newline
CRLF_TOKEN = "crlf-header-secret-77aa"
SECRETS = (API_KEY, APP_KEY, KUBE_TOKEN, PROM_TOKEN, PROM_PASSWORD, SHORT_PASSWORD, NEWLINE_KEY, CRLF_TOKEN)
USERINFO = (f"exporter:{PROM_PASSWORD}", f"u:{SHORT_PASSWORD}", f"u:{PROM_PASSWORD}")  # as Basic auth sends them


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


# Every way a secret could show: raw, JSON- and repr-escaped, base64, and base64 of each user:password.
FORMS = sorted(
    {f for s in SECRETS for f in (s, json.dumps(s)[1:-1], repr(s)[1:-1], b64(s))} | {b64(u) for u in USERINFO}
)


@pytest.fixture(scope="module")
def kube(demo_prom: DemoProm, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FakeKubeAPI, Path]]:
    with FakeKubeAPI(token=KUBE_TOKEN) as api:
        for manifest in kube_service_manifests(demo_prom.services):
            api.add(manifest)
        yield api, api.write_kubeconfig(tmp_path_factory.mktemp("kube") / "kubeconfig")


@pytest.fixture
def intake() -> Iterator[FakeIntake]:
    with FakeIntake(api_key=API_KEY) as server:
        yield server


def secret_env(demo_prom: DemoProm, kubeconfig: Path, intake: FakeIntake, **extra: str) -> dict[str, str]:
    host = demo_prom.url.removeprefix("http://")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EXPORTER_", "DD_")) and k != "KUBECONFIG"}
    env |= {
        "EXPORTER_PROMETHEUS_URL": f"http://exporter:{PROM_PASSWORD}@{host}",
        "EXPORTER_PROMETHEUS_HEADERS": f"Authorization=Bearer {PROM_TOKEN}",
        "EXPORTER_DATADOG_URL": intake.url,
        "DD_API_KEY": API_KEY,
        "DD_APP_KEY": APP_KEY,
        "KUBECONFIG": str(kubeconfig),
        "EXPORTER_LOG_LEVEL": "debug",
    }
    return env | extra


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "exporter", *args], env=env, capture_output=True, text=True, timeout=120
    )


def assert_clean(*texts: str) -> None:
    for text in texts:
        for form in FORMS:
            assert form not in text, form


def assert_intake_clean(intake: FakeIntake) -> None:
    """The series, event and metadata bodies the exporter sent, and every header but the two key headers
    (which the intake itself records as <redacted>)."""
    assert intake.requests
    for request in intake.requests:
        assert_clean(
            json.dumps(request.json), request.path, json.dumps(dict(request.query)), str(dict(request.headers))
        )


def command_paths(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    yield prefix
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from command_paths(sub, (*prefix, name))


def test_help_of_every_command(demo_prom: DemoProm, kube: tuple[FakeKubeAPI, Path], intake: FakeIntake) -> None:
    env = secret_env(demo_prom, kube[1], intake)
    paths = list(command_paths(build_parser()))
    assert {("once",), ("run",), ("report", "mtls"), ("canary", "analyze"), ("rollout",)} <= set(paths)
    for path in paths:
        proc = run(env, *path, "--help")
        assert proc.returncode == 0 and "usage:" in proc.stdout, path
        assert_clean(proc.stdout, proc.stderr)


def test_every_command_success_and_failure_paths(
    demo_prom: DemoProm, kube: tuple[FakeKubeAPI, Path], intake: FakeIntake
) -> None:
    api, kubeconfig = kube
    env = secret_env(demo_prom, kubeconfig, intake)
    at = str(int(demo_prom.at))
    outputs: list[subprocess.CompletedProcess[str]] = []

    ok = run(env, "once", "--at", at, "--submit", "--output", "json")
    assert ok.returncode == 0, ok.stderr
    assert intake.points() and '"event": "promql"' in ok.stderr  # really at debug level
    outputs.append(ok)

    intake.set_fault(lambda request: Reply(403, body={"errors": ["Forbidden"]}))
    outputs.append(rejected := run(env, "once", "--at", at, "--submit"))
    assert rejected.returncode == 1 and "403" in rejected.stderr
    intake.set_fault(None)

    outputs.append(
        unreachable := run(env | {"EXPORTER_PROMETHEUS_URL": f"http://u:{PROM_PASSWORD}@127.0.0.1:9"}, "once")
    )
    assert unreachable.returncode == 1 and "cannot reach Prometheus" in unreachable.stderr

    api.set_unavailable(True)
    outputs.append(no_kube := run(env, "once"))
    api.set_unavailable(False)
    assert no_kube.returncode == 1

    outputs.append(bad := run(env | {"EXPORTER_TAGS": "Not A Tag"}, "once"))
    assert bad.returncode == 2

    outputs.append(report := run(env, "report", "mtls", "--at", at, "--submit", "--output", "json"))
    assert report.returncode == 0, report.stderr
    outputs.append(
        canary := run(env, "canary", "analyze", "--namespace", "shop", "--service", "recommendations",
                      "--canary", "v2", "--stable", "v1", "--at", at, "--output", "json")
    )  # fmt: skip
    assert canary.returncode in (0, 1, 3), canary.stderr
    outputs.append(
        rollout := run(env, "rollout", "--namespace", "shop", "--service", "recommendations",
                       "--canary-image", "registry.local/recommendations:2", "--dry-run")
    )  # fmt: skip
    assert rollout.returncode in (0, 1), rollout.stderr  # no VirtualService here: a clear preflight failure
    outputs.append(html := run(env, "report", "mtls", "--at", at, "--output", "html"))
    assert html.returncode == 0 and "<html" in html.stdout.lower(), html.stderr
    out_file = Path(os.environ.get("TMPDIR", "/tmp")) / f"secrets-report-{os.getpid()}.md"
    outputs.append(written := run(env, "report", "mtls", "--at", at, "--out", str(out_file)))
    assert written.returncode == 0, written.stderr
    report_text = out_file.read_text()
    out_file.unlink()
    assert report_text.strip()
    outputs.append(rules := run(env, "rules"))
    outputs.append(operator := run(env, "rules", "--format", "prometheus-rule"))
    assert rules.returncode == 0 and operator.returncode == 0 and "groups" in rules.stdout, rules.stderr
    outputs.append(dry := run(env, "datadog", "setup", "--dry-run"))
    assert dry.returncode == 0 and dry.stdout.strip(), dry.stderr
    outputs.append(setup := run(env, "datadog", "setup"))
    assert setup.returncode == 0, setup.stderr
    for proc in outputs:
        assert_clean(proc.stdout, proc.stderr)
    assert_clean(report_text)
    assert intake.points() and intake.events()  # series from once, the report's event: their bodies are searched
    assert_intake_clean(intake)


def echoing(body: str, status: int) -> Fault:
    return Fault(status=status, body=body.encode(), headers={"Content-Type": "application/json"})


def test_upstream_error_bodies_that_echo_the_secrets_are_scrubbed_in_every_command(
    demo_prom: DemoProm, kube: tuple[FakeKubeAPI, Path], intake: FakeIntake, tmp_path: Path
) -> None:
    """A proxy, a Thanos or an API server that quotes the credentials it refused, in every shape."""
    echo = (
        f"refused Authorization: Bearer {PROM_TOKEN} and Basic {b64('exporter:' + PROM_PASSWORD)} "
        f"for http://exporter:{PROM_PASSWORD}@thanos, {json.dumps(PROM_TOKEN)}, key {API_KEY}, app {APP_KEY}"
    )
    api, kubeconfig = kube
    at = str(int(demo_prom.at))
    out_file = tmp_path / "report.html"
    with FaultProxy(demo_prom.url) as prom, FaultProxy(api.url) as kube_proxy:
        config = tmp_path / "kubeconfig"
        config.write_text(kubeconfig.read_text().replace(api.url, kube_proxy.url))
        env = secret_env(demo_prom, config, intake)
        env["EXPORTER_PROMETHEUS_URL"] = f"http://exporter:{PROM_PASSWORD}@{prom.url.removeprefix('http://')}"
        prom_error = {"status": "error", "errorType": "bad_data", "error": echo}
        kube_error = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 403,
                      "message": f"token {KUBE_TOKEN} ({b64(KUBE_TOKEN)}) is not allowed"}  # fmt: skip
        once, submit = ("once", "--at", at), ("once", "--at", at, "--output", "json", "--submit")
        report = ("report", "mtls", "--at", at, "--output", "json")
        html = ("report", "mtls", "--at", at, "--output", "html", "--out", str(out_file))
        canary = ("canary", "analyze", "--namespace", "shop", "--service", "recommendations", "--canary", "v2",
                  "--stable", "v1", "--at", at, "--output", "json")  # fmt: skip
        rollout = ("rollout", "--namespace", "shop", "--service", "recommendations",
                   "--canary-image", "registry.local/recommendations:2", "--dry-run")  # fmt: skip
        faults = [  # each upstream's fault, with the commands that call that upstream
            ("prometheus 400", lambda: prom.set_fault(lambda r: echoing(json.dumps(prom_error), 400)),
             [once, report, html, canary]),
            ("prometheus 503 text", lambda: prom.set_fault(lambda r: echoing(echo, 503)), [once, canary]),
            ("kubernetes 403", lambda: kube_proxy.set_fault(lambda r: echoing(json.dumps(kube_error), 403)),
             [once, report, rollout]),
            ("datadog 403", lambda: intake.set_fault(lambda r: Reply(403, body={"errors": [echo]})), [submit]),
        ]  # fmt: skip
        for name, inject, commands in faults:
            inject()
            for args in commands:
                proc = run(env, *args)
                assert proc.returncode != 0, (name, args)
                assert "Traceback" not in proc.stderr, (name, args, proc.stderr[-2000:])
                assert "<redacted>" in proc.stderr, (name, args, proc.stderr[-2000:])  # the echo was shown, masked
                assert_clean(proc.stdout, proc.stderr)
                if out_file.exists():
                    assert_clean(out_file.read_text())
                    out_file.unlink()
            prom.set_fault(None)
            kube_proxy.set_fault(None)
            intake.set_fault(None)
        assert {r.status for r in intake.requests} >= {403}  # the Datadog fault was reached
        intake.set_fault(lambda r: Reply(403, body={"errors": [echo]}))
        proc = run(env, "datadog", "setup")
        assert proc.returncode == 1 and "403" in proc.stderr, proc.stderr
        assert_clean(proc.stdout, proc.stderr)


def test_the_daemon_its_metrics_and_its_spool(
    demo_prom: DemoProm, kube: tuple[FakeKubeAPI, Path], intake: FakeIntake, tmp_path: Path
) -> None:
    intake.set_fault(lambda request: Reply(503))  # so that points are spooled
    # a spool from an earlier run with an entry no exporter could have written: set aside at start
    (tmp_path / "backlog.json").write_text(json.dumps({"format": 1, "points": [["not a metric!", 1.0, 1, []]]}))
    port = free_port()
    env = secret_env(
        demo_prom, kube[1], intake, EXPORTER_HTTP_PORT=str(port), EXPORTER_INTERVAL_SECONDS="1",
        EXPORTER_SPOOL_DIR=str(tmp_path),
    )  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-m", "exporter", "run"], env=env, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: len(intake.requests) >= 1 or proc.poll() is not None, "a submission", timeout=90)
        assert proc.poll() is None, proc.communicate()[1]
        metrics = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0
    assert "mesh_exporter_cycle_duration_seconds" in metrics
    spool = (tmp_path / "backlog.json").read_text()
    assert "istio.service.request_rate" in spool
    assert [p.name for p in tmp_path.glob("backlog.json.invalid-*")]  # what it set aside is searched too
    assert_clean(stderr, metrics, *(p.read_text() for p in tmp_path.iterdir()))
    assert_intake_clean(intake)


def test_planted_secrets_of_every_shape_never_appear_under_any_failure(
    demo_prom: DemoProm, kube: tuple[FakeKubeAPI, Path], intake: FakeIntake, tmp_path: Path
) -> None:
    env = secret_env(demo_prom, kube[1], intake)
    host = demo_prom.url.removeprefix("http://")
    at = str(int(demo_prom.at))
    spool_file = tmp_path / "a-file"
    spool_file.write_text("x")
    not_a_mapping = tmp_path / "kubeconfig-list"
    not_a_mapping.write_text("- a\n- b\n")
    cases: list[tuple[dict[str, str], tuple[str, ...], int]] = [
        # malformed URLs carrying credentials: exit 2, the value never echoed
        ({"EXPORTER_PROMETHEUS_URL": f"u:{PROM_PASSWORD}@prometheus:9090"}, ("once",), 2),
        ({"EXPORTER_PROMETHEUS_URL": f"ftp://u:{PROM_PASSWORD}@prometheus:9090"}, ("once",), 2),
        ({"EXPORTER_PROMETHEUS_URL": f"http//u:{SHORT_PASSWORD}@prometheus:9090"}, ("once",), 2),
        ({"EXPORTER_DATADOG_URL": f"u:{SHORT_PASSWORD}@intake"}, ("once",), 2),
        ({"EXPORTER_PROMETHEUS_URL": f"http://u:{SHORT_PASSWORD}@{host.split(':')[0]}:70000"}, ("once",), 2),
        # a key with a newline works (stripped); one with CR/LF inside is refused, never shown
        ({"DD_API_KEY": f"{API_KEY}\n"}, ("once", "--at", at, "--submit"), 0),
        ({"DD_API_KEY": f" {NEWLINE_KEY}\n"}, ("once", "--at", at, "--submit"), 1),  # the intake refuses it: 403
        ({"DD_API_KEY": f"{NEWLINE_KEY}\r\nX-Evil: 1"}, ("once",), 2),
        ({"EXPORTER_PROMETHEUS_HEADERS": f"Authorization=Bearer {CRLF_TOKEN}\r\nX: y"}, ("once",), 2),
        # a short URL password, working and failing, at debug level
        ({"EXPORTER_PROMETHEUS_URL": f"http://u:{SHORT_PASSWORD}@{host}"}, ("once", "--at", at), 0),
        ({"EXPORTER_PROMETHEUS_URL": f"http://u:{SHORT_PASSWORD}@127.0.0.1:9"}, ("once",), 1),
        ({"EXPORTER_PROMETHEUS_URL": f"http://u:{SHORT_PASSWORD}@{host}"}, ("report", "mtls", "--at", at), 0),
        # crashes that used to be tracebacks
        ({"EXPORTER_INTERVAL_SECONDS": "inf"}, ("once",), 2),
        ({"EXPORTER_SPOOL_DIR": str(spool_file)}, ("run",), 2),
        ({"KUBECONFIG": str(not_a_mapping)}, ("once",), 2),
        ({}, ("once", "--at", "inf"), 2),
        ({}, ("report", "mtls", "--window", "99999999999999999999y"), 2),
        ({}, ("once", "--bogus"), 2),
    ]
    busy = socket.socket()
    busy.bind(("0.0.0.0", 0))
    busy.listen()
    cases.append(({"EXPORTER_HTTP_PORT": str(busy.getsockname()[1])}, ("run",), 2))
    for extra, args, code in cases:
        proc = run(env | {"EXPORTER_PROMETHEUS_URL": f"http://u:{SHORT_PASSWORD}@{host}"} | extra, *args)
        assert proc.returncode == code, (extra, args, proc.stderr[-2000:])
        assert "Traceback" not in proc.stderr, (extra, args, proc.stderr[-2000:])
        if code == 2:  # one line for the user; a daemon at debug level may have logged JSON lines before it
            said = [line for line in proc.stderr.strip().splitlines() if not line.startswith("{")]
            assert len(said) == 1 and said[0].startswith("exporter"), (extra, args, proc.stderr)
        assert_clean(proc.stdout, proc.stderr)
    busy.close()
    assert intake.points()  # the stripped key was accepted by the intake (the newline case submitted)
