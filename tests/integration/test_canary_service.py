"""The canary analysis endpoint and the Flagger webhooks, served as `exporter run` serves them, against a real
Prometheus over generated canary meshes: every verdict through every endpoint (status and body equal to the
CLI's JSON at the same instant), Flagger's workload naming, the cache, the bounds, bad input, outages, token."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import requests
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from exporter.canary.analysis import FAIL, INCONCLUSIVE, PASS
from exporter.cli import clients
from exporter.cli.run import canary_routes
from exporter.config import Settings
from exporter.export.canary_api import GuardedEndpoints
from exporter.export.daemon import Daemon
from exporter.export.health import MAX_CONNECTIONS, HealthServer, Request
from exporter.logs import redactor
from sandbox.intake import FakeIntake
from sandbox.kubeapi import FakeKubeAPI
from sandbox.proxy import Fault, FaultProxy
from tests.support.canary_api import (
    EQUAL,
    FLAGGER_PAIRS,
    SPARSE,
    WORSE,
    CanaryProm,
    analyze_cli,
    canary_prometheus,
    serve,
)
from tests.support.canary_mesh import expected_counts
from tests.support.procs import API_KEY, free_port, wait_for
from tests.support.prom import PrometheusFactory
from tests.support.scripted import ScriptedServer

pytestmark = pytest.mark.integration

ANALYSIS, CHECK, GATE = "/v1/canary/analysis", "/v1/flagger/check", "/v1/flagger/gate"
BY_VERDICT = {FAIL: WORSE, PASS: EQUAL, INCONCLUSIVE: SPARSE}
FLAGGER_BY_VERDICT = {PASS: "podinfo", FAIL: "bad", INCONCLUSIVE: "thin"}
TOKEN = "canary-api-token-for-tests-0123456789"


@pytest.fixture(scope="module")
def prom(make_prometheus: PrometheusFactory) -> CanaryProm:
    return canary_prometheus(make_prometheus)


@pytest.fixture(scope="module")
def api(prom: CanaryProm) -> Iterator[str]:
    with serve(prometheus_url=prom.url) as (base, _):
        yield base


def params(service: str) -> dict[str, str]:
    return {"namespace": "shop", "service": service, "canary": "canary", "stable": "stable"}


def cli_json(url: str, at: int, service: str | None = None, *, workload: str | None = None) -> dict[str, Any]:
    """`canary analyze --output json` at `at`: the service's canary against stable, or a workload's
    (Flagger's naming)."""
    flags = params(service) if service else {"namespace": "test", "workload": workload}
    code, doc, out = analyze_cli(url, *(f"--{k}={v}" for k, v in flags.items()),
                                 "--at", str(at), "--output", "json")  # fmt: skip
    assert code in (0, 1, 3), out
    return doc


@pytest.mark.parametrize("verdict", [PASS, FAIL, INCONCLUSIVE])
def test_analysis_get_and_post_serve_the_clis_json_with_200_for_every_verdict(
    prom: CanaryProm, api: str, verdict: str
) -> None:
    service = BY_VERDICT[verdict]
    got = requests.get(api + ANALYSIS, params=params(service.name), timeout=30)
    assert got.status_code == 200 and got.headers["Content-Type"] == "application/json"
    doc = got.json()
    assert doc["verdict"] == verdict
    assert doc["evaluated_at"] % 30 == 0 and abs(doc["evaluated_at"] - time.time()) < 60  # now, floored to 30 s
    assert (doc["canary"]["requests"], doc["canary"]["errors"]) == expected_counts(service, "canary")
    assert doc == cli_json(prom.url, doc["evaluated_at"], service.name)  # reproducible with --at
    posted = requests.post(api + ANALYSIS, json=params(service.name), timeout=30)
    assert posted.status_code == 200
    assert posted.json() == cli_json(prom.url, posted.json()["evaluated_at"], service.name)


def test_thresholds_are_the_clis_flags_in_snake_case(prom: CanaryProm, api: str) -> None:
    # ratings' canary answers 99.95 %: demanding 99.99 % fails it only if the binomial test confirms
    # (it cannot with 1 error in 1,200), so the success check becomes inconclusive, never pass.
    query = {**params("ratings"), "min_success_pct": "99.99", "min_requests": "2000", "window": "5m"}
    doc = requests.get(api + ANALYSIS, params=query, timeout=30).json()
    assert doc["thresholds"]["min_success_pct"] == 99.99 and doc["thresholds"]["min_requests"] == 2000
    assert doc["verdict"] == INCONCLUSIVE  # 1,200 canary requests < 2,000
    code, cli, out = analyze_cli(prom.url, *(f"--{k.replace('_', '-')}={v}" for k, v in query.items()),
                                 "--at", str(doc["evaluated_at"]), "--output", "json")  # fmt: skip
    assert code == 3 and cli == doc, out


@pytest.mark.parametrize("verdict", [PASS, FAIL, INCONCLUSIVE])
def test_flagger_hooks_select_workloads_name_and_name_primary(prom: CanaryProm, api: str, verdict: str) -> None:
    name = FLAGGER_BY_VERDICT[verdict]
    payload = {"name": name, "namespace": "test", "phase": "Progressing", "metadata": {}}
    check = requests.post(api + CHECK, json=payload, timeout=30)
    gate = requests.post(api + GATE, json=payload, timeout=30)
    assert check.status_code == {PASS: 200, INCONCLUSIVE: 200, FAIL: 412}[verdict]
    assert gate.status_code == {PASS: 200, INCONCLUSIVE: 412, FAIL: 412}[verdict]
    doc = check.json()
    assert doc["verdict"] == gate.json()["verdict"] == verdict
    assert doc["version_label"] == "destination_workload"
    assert doc["scope"] == ['destination_workload_namespace="test"',
                            f'destination_workload=~"{name}|{name}-primary"']  # fmt: skip
    assert (doc["canary"]["version"], doc["stable"]["version"]) == (name, f"{name}-primary")
    pair = FLAGGER_PAIRS[name]
    assert (doc["canary"]["requests"], doc["canary"]["errors"]) == expected_counts(pair, "canary")
    assert (doc["stable"]["requests"], doc["stable"]["errors"]) == expected_counts(pair, "stable")
    assert doc == cli_json(prom.url, doc["evaluated_at"], workload=name)  # reproducible with --workload --at
    assert gate.json() == cli_json(prom.url, gate.json()["evaluated_at"], workload=name)


def test_flagger_metadata_names_the_workload_of_a_canary_named_otherwise(prom: CanaryProm, api: str) -> None:
    """A Canary `podinfo-canary` whose targetRef is the Deployment `podinfo`: `metadata.workload` selects
    `podinfo` and `podinfo-primary`; without it the scope matches nothing (never a pass)."""
    payload = {"name": "podinfo-canary", "namespace": "test", "metadata": {"workload": "podinfo"}}
    gate = requests.post(api + GATE, json=payload, timeout=30)
    assert gate.status_code == 200 and gate.json()["verdict"] == PASS
    pair = FLAGGER_PAIRS["podinfo"]
    assert (gate.json()["canary"]["requests"], gate.json()["stable"]["requests"]) == (
        expected_counts(pair, "canary")[0], expected_counts(pair, "stable")[0])  # fmt: skip
    assert gate.json() == cli_json(prom.url, gate.json()["evaluated_at"], workload="podinfo")
    unnamed = requests.post(api + GATE, json={**payload, "metadata": {}}, timeout=30)
    assert unnamed.status_code == 412 and unnamed.json()["verdict"] == INCONCLUSIVE
    assert unnamed.json()["canary"]["seen"] is False


def test_a_service_name_filter_finds_nothing_for_flagger_names(prom: CanaryProm) -> None:
    code, doc, out = analyze_cli(prom.url, "--namespace=test", "--service=podinfo", "--canary=podinfo",
                                 "--stable=podinfo-primary", "--version-label=destination_workload",
                                 "--output", "json")  # fmt: skip
    assert code == 3, out
    assert doc["canary"]["requests"] == doc["stable"]["requests"] == 0
    assert doc["canary"]["seen"] is False and "no series at all" in doc["reasons"][0]


def test_flagger_metadata_overrides_label_versions_and_thresholds(api: str) -> None:
    payload = {"name": "podinfo", "namespace": "test",
               "metadata": {"version_label": "destination_version", "canary": "canary", "stable": "stable",
                            "min_requests": "20000", "window": "5m"}}  # fmt: skip
    check = requests.post(api + CHECK, json=payload, timeout=30)
    doc = check.json()
    assert doc["version_label"] == "destination_version" and doc["thresholds"]["min_requests"] == 20000
    assert doc["canary"]["requests"] == expected_counts(FLAGGER_PAIRS["podinfo"], "canary")[0]
    assert doc["verdict"] == INCONCLUSIVE and check.status_code == 200
    assert requests.post(api + GATE, json=payload, timeout=30).status_code == 412


@pytest.mark.parametrize(
    ("path", "method", "query", "body", "line"),
    [
        (ANALYSIS, "GET", "namespace=shop&service=reviews&canary=canary", None, "stable: required"),
        (ANALYSIS, "GET", "namespace=Shop&service=reviews&canary=a&stable=b", None,
         "namespace: not a Kubernetes name: 'Shop'"),
        (ANALYSIS, "GET", "namespace=shop&service=1reviews&canary=a&stable=b", None,
         "service: not a Kubernetes name: '1reviews'"),
        (ANALYSIS, "GET", "namespace=shop&service=reviews&canary=a&stable=b&version_label=app-version", None,
         "version_label: not a Prometheus label name: 'app-version'"),
        (ANALYSIS, "GET", "namespace=shop&service=reviews&canary=a&stable=b&confidence=1.5", None,
         "confidence: must be within (0, 1), e.g. 0.95"),
        (ANALYSIS, "GET", "namespace=shop&service=reviews&canary=a&stable=b&window=5x", None,
         "window: not a PromQL duration: '5x'"),
        (ANALYSIS, "GET", "namespace=shop&service=reviews&canary=a&stable=b&window=99999999999999999999y", None,
         "window: "),
        (ANALYSIS, "GET", "namespace=shop&service=reviews&workload=reviews", None,
         "workload: give service or workload, not both"),
        (CHECK, "POST", "", b'{"name": "podinfo", "namespace": "test", "metadata": {"window": "3661d"}}',
         "window: "),
        (ANALYSIS, "GET", "namespace=shop&service=reviews&canary=a&stable=a", None, "canary: must differ"),
        (ANALYSIS, "GET", "namespace=shop&service=reviews&canary=a&stable=b&at=1", None, "at: unknown parameter"),
        (ANALYSIS, "GET", "namespace=shop&service=reviews&canary=a%22%7D&stable=b", None,
         "canary: not a Kubernetes label value"),
        (ANALYSIS, "POST", "", b"[1]", "body: must be a JSON object"),
        (ANALYSIS, "POST", "", b"{not json", "body: not JSON"),
        (CHECK, "POST", "", b'{"name": "podinfo", "namespace": "te st"}', "namespace: not a Kubernetes name"),
        (GATE, "POST", "", b'{"name": "podinfo", "namespace": "test", "metadata": {"query": "up"}}',
         "query: unknown metadata key"),
    ],
)  # fmt: skip
def test_bad_requests_are_400_with_one_line(
    api: str, path: str, method: str, query: str, body: bytes | None, line: str
) -> None:
    reply = requests.request(method, f"{api}{path}?{query}", data=body, timeout=10)
    assert reply.status_code == 400
    assert reply.text.endswith("\n") and reply.text.count("\n") == 1
    assert reply.text.startswith(line), reply.text


def test_wrong_method_is_405(api: str) -> None:
    assert requests.get(api + CHECK, timeout=10).status_code == 405


def test_two_calls_in_one_step_cost_one_set_of_queries(prom: CanaryProm) -> None:
    with FaultProxy(prom.url) as proxy, serve(prometheus_url=proxy.url) as (base, _):
        for _ in range(3):  # a retry only when the two calls straddle a step boundary
            before = len(proxy.requests)
            first = requests.get(base + ANALYSIS, params=params("ratings"), timeout=30).json()
            after_first = len(proxy.requests)
            second = requests.get(base + ANALYSIS, params=params("ratings"), timeout=30).json()
            if first["evaluated_at"] == second["evaluated_at"]:
                break
        assert after_first - before == 4  # requests, errors, buckets, p99: all subsets seen, no label lookup
        assert len(proxy.requests) == after_first and second == first
        requests.get(base + ANALYSIS, params={**params("ratings"), "min_requests": "50"}, timeout=30)
        assert len(proxy.requests) > after_first  # another request is another cache entry


def test_concurrency_bound_and_deadline_never_hold_the_probes(prom: CanaryProm) -> None:
    delay = 6.0
    with (
        FaultProxy(prom.url) as proxy,
        serve(prometheus_url=proxy.url, canary_api_concurrency=1, canary_api_deadline_seconds=1.0) as (base, _),
    ):
        proxy.set_fault(lambda request: Fault(delay_s=delay) if "query" in request.path else None)
        results: list[requests.Response] = []
        slow = threading.Thread(
            target=lambda: results.append(requests.get(base + ANALYSIS, params=params("ratings"), timeout=30))
        )
        started = time.monotonic()
        slow.start()
        wait_for(lambda: len(proxy.requests) > 0, "the first analysis to reach Prometheus")
        busy = requests.get(base + ANALYSIS, params=params("reviews"), timeout=30)
        assert busy.status_code == 429 and busy.text.startswith("busy:")
        for path in ("/healthz", "/readyz", "/metrics"):
            assert requests.get(base + path, timeout=5).status_code == 200
        assert slow.is_alive() and not results  # the probes were answered while the analysis was stuck
        slow.join(timeout=30)
        assert results[0].status_code == 503
        assert results[0].text == "analysis did not finish within 1s\n"
        assert time.monotonic() - started < delay  # answered at the deadline, before Prometheus answered
        # the slot stays taken until the stuck queries end, so the bound holds
        assert requests.get(base + ANALYSIS, params=params("reviews"), timeout=30).status_code == 429


MAX_ANALYSES = 32  # the largest EXPORTER_CANARY_API_CONCURRENCY (test_the_concurrency_setting_leaves_the_probes_room)


@pytest.mark.parametrize(
    "workers", [Settings().canary_api_concurrency, 6, MAX_ANALYSES], ids=["default", "six", "maximum"]
)
def test_the_canary_routes_are_bounded_by_their_own_setting_alone(workers: int) -> None:
    """As many analyses as EXPORTER_CANARY_API_CONCURRENCY run at once through the daemon's HTTP server (the
    default, more than 4, and the largest the setting accepts); one more is refused with 429 and counted; the
    probes answer meanwhile."""
    entered, release = threading.Semaphore(0), threading.Event()

    def held(method: str, query: str, body: bytes) -> tuple[int, dict[str, Any] | str]:
        entered.release()
        release.wait(30)
        return 200, {"verdict": PASS}

    registry = CollectorRegistry()
    guarded = GuardedEndpoints({ANALYSIS: held}, registry=registry, workers=workers, deadline=30)
    server = HealthServer(ready=lambda: (True, "ready\n"), registry=registry, routes=guarded.routes())
    base = f"http://127.0.0.1:{server.start(0)}"
    replies: list[int] = []
    callers = [threading.Thread(target=lambda: replies.append(requests.get(base + ANALYSIS, timeout=30).status_code))
               for _ in range(workers)]  # fmt: skip
    try:
        for t in callers:
            t.start()
        for _ in range(workers):
            assert entered.acquire(timeout=30)  # every analysis is running
        busy = requests.get(base + ANALYSIS, timeout=30)
        assert busy.status_code == 429 and busy.text.startswith(f"busy: {workers} analyses already running")
        for path in ("/healthz", "/readyz", "/metrics"):
            assert requests.get(base + path, timeout=5).status_code == 200
    finally:
        release.set()
        for t in callers:
            t.join(timeout=30)
        server.stop()
    assert replies == [200] * workers
    count = registry.get_sample_value
    assert count("mesh_exporter_canary_api_requests_total", {"endpoint": ANALYSIS, "status": "429"}) == 1.0
    assert count("mesh_exporter_canary_api_requests_total", {"endpoint": ANALYSIS, "status": "200"}) == workers


def test_the_concurrency_setting_leaves_the_probes_room() -> None:
    """At most half the HTTP server's connections may hold analyses: the probes and the 429s keep the rest."""
    assert Settings(canary_api_concurrency=MAX_ANALYSES).canary_api_concurrency * 2 <= MAX_CONNECTIONS
    with pytest.raises(ValidationError):
        Settings(canary_api_concurrency=MAX_ANALYSES + 1)


def test_prometheus_down_is_503_never_a_verdict() -> None:
    with serve(prometheus_url=f"http://127.0.0.1:{free_port()}") as (base, registry):
        reply = requests.get(base + ANALYSIS, params=params("reviews"), timeout=30)
        assert reply.status_code == 503
        assert reply.text.startswith("could not analyse: cannot reach Prometheus at http://127.0.0.1:")
        assert "verdict" not in reply.text
        flagger = requests.post(base + CHECK, json={"name": "podinfo", "namespace": "test"}, timeout=30)
        assert flagger.status_code == 503
        assert (
            registry.get_sample_value(
                "mesh_exporter_canary_api_requests_total", {"endpoint": ANALYSIS, "status": "503"}
            )
            == 1.0
        )


PROM_PASSWORD, PROM_TOKEN = "pw-Zq9~canary", "prom-bearer-secret-55ef10aa"


def test_no_reply_carries_a_prometheus_password_or_token_under_failure() -> None:
    """Prometheus down (its URL, with userinfo, in the error) and Prometheus echoing the credentials in a
    400 body: every endpoint answers 503 with the error, and neither secret (nor its Basic-auth form)."""
    error = (f"tenant for token {PROM_TOKEN} unknown; Authorization: Bearer {PROM_TOKEN}; "
             f"userinfo http://exporter:{PROM_PASSWORD}@thanos; {PROM_PASSWORD}")  # fmt: skip
    echo = json.dumps({"status": "error", "errorType": "bad_data", "error": error}).encode()
    with ScriptedServer(lambda method, path, query: (400, {"Content-Type": "application/json"}, echo)) as echoing:
        down = f"http://127.0.0.1:{free_port()}"
        for upstream in (down, echoing.url):
            url = upstream.replace("http://", f"http://exporter:{PROM_PASSWORD}@")
            settings = Settings(prometheus_url=url, prometheus_headers={"Authorization": f"Bearer {PROM_TOKEN}"})
            redactor.set(settings.secrets())  # as `exporter run` does at start
            try:
                with serve(prometheus_url=url, prometheus_headers=settings.prometheus_headers) as (base, _):
                    replies = [
                        requests.get(base + ANALYSIS, params=params("reviews"), timeout=30),
                        requests.post(base + ANALYSIS, json=params("reviews"), timeout=30),
                        *(requests.post(base + path, json={"name": "podinfo", "namespace": "test"}, timeout=30)
                          for path in (CHECK, GATE)),
                    ]  # fmt: skip
                    text = "".join(r.text for r in replies) + requests.get(base + "/metrics", timeout=5).text
            finally:
                redactor.set(())
            assert [r.status_code for r in replies] == [503] * 4, text
            assert all(r.text.startswith("could not analyse: ") for r in replies), text
            for secret in (PROM_PASSWORD, PROM_TOKEN, base64.b64encode(f"exporter:{PROM_PASSWORD}".encode()).decode()):
                assert secret not in text


def test_shutdown_ends_retry_waits_at_once() -> None:
    stopping = threading.Event()
    stopping.set()
    settings = Settings(prometheus_url=f"http://127.0.0.1:{free_port()}", canary_api_enabled=True)
    route = canary_routes(settings, CollectorRegistry(), stopping)[ANALYSIS]
    reply = route(Request("GET", ANALYSIS, urlencode(params("reviews")), {}, b""))
    assert reply.status == 503 and reply.body.startswith(b"could not analyse: shutting down")


def test_the_token_when_set(prom: CanaryProm) -> None:
    token = "canary-token-0123456789abcdef"
    with serve(prometheus_url=prom.url, canary_api_token=token) as (base, _):
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": token}):
            reply = requests.get(base + ANALYSIS, params=params("reviews"), headers=headers, timeout=30)
            assert reply.status_code == 401 and reply.text == "missing or wrong Authorization token\n"
        ok = requests.get(base + ANALYSIS, params=params("reviews"), timeout=30,
                          headers={"Authorization": f"Bearer {token}"})  # fmt: skip
        assert ok.status_code == 200 and ok.json()["verdict"] == FAIL
        assert requests.get(base + "/healthz", timeout=5).status_code == 200  # probes need no token


def test_self_metrics_count_requests_and_verdicts(prom: CanaryProm) -> None:
    with serve(prometheus_url=prom.url) as (base, _):
        for service in ("reviews", "reviews", "ratings"):
            requests.get(base + ANALYSIS, params=params(service), timeout=30)
        requests.get(base + ANALYSIS, params={"namespace": "shop"}, timeout=30)
        requests.post(base + CHECK, json={"name": "bad", "namespace": "test"}, timeout=30)
        text = requests.get(base + "/metrics", timeout=5).text
    assert f'mesh_exporter_canary_api_requests_total{{endpoint="{ANALYSIS}",status="200"}} 3.0' in text
    assert f'mesh_exporter_canary_api_requests_total{{endpoint="{ANALYSIS}",status="400"}} 1.0' in text
    assert f'mesh_exporter_canary_api_verdicts_total{{endpoint="{ANALYSIS}",verdict="fail"}} 2.0' in text
    assert f'mesh_exporter_canary_api_verdicts_total{{endpoint="{ANALYSIS}",verdict="pass"}} 1.0' in text
    assert f'mesh_exporter_canary_api_requests_total{{endpoint="{CHECK}",status="412"}} 1.0' in text


def test_exporter_run_serves_the_endpoints_only_when_enabled(prom: CanaryProm, tmp_path: Path) -> None:
    with FakeKubeAPI() as kube, FakeIntake(api_key=API_KEY) as intake:
        kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig")
        for enabled in ("true", "false"):
            port = free_port()
            env = {k: v for k, v in os.environ.items() if not k.startswith(("EXPORTER_", "DD_"))}
            env.update(EXPORTER_PROMETHEUS_URL=prom.url, EXPORTER_DATADOG_URL=intake.url, DD_API_KEY=API_KEY,
                       KUBECONFIG=str(kubeconfig), EXPORTER_HTTP_PORT=str(port),
                       EXPORTER_CANARY_API_ENABLED=enabled, EXPORTER_CANARY_API_TOKEN=TOKEN)  # fmt: skip
            proc = subprocess.Popen([sys.executable, "-m", "exporter", "run"], env=env, stderr=subprocess.PIPE)
            try:
                wait_for(lambda port=port: _up(port), "the daemon's HTTP server", timeout=60)
                reply = requests.get(f"http://127.0.0.1:{port}{ANALYSIS}", params=params("reviews"), timeout=30,
                                     headers={"Authorization": f"Bearer {TOKEN}"})  # fmt: skip
                if enabled == "true":
                    assert reply.status_code == 200 and reply.json()["verdict"] == FAIL
                else:
                    assert reply.status_code == 404
            finally:
                proc.send_signal(signal.SIGTERM)
                _, stderr = proc.communicate(timeout=30)
            assert proc.returncode == 0, stderr
            started = json.loads(next(line for line in stderr.splitlines() if b'"starting"' in line))
            assert started["settings"]["canary_api_enabled"] is (enabled == "true")
            assert started["settings"]["canary_api_token"] == "<set>" and TOKEN.encode() not in stderr


def _up(port: int) -> bool:
    try:
        return requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
    except requests.ConnectionError:
        return False


class Follower:
    """A replica that does not hold the Lease."""

    def may_submit(self, at: int) -> bool:
        return False

    def submitted(self, at: int) -> None:
        raise AssertionError("a follower never submits")

    def status(self) -> str:
        return "follower"

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass


def test_a_follower_replica_serves_the_analysis_too(prom: CanaryProm, tmp_path: Path) -> None:
    with FakeKubeAPI() as kube:
        settings = Settings(prometheus_url=prom.url, kubeconfig=str(kube.write_kubeconfig(tmp_path / "kc")),
                            canary_api_enabled=True, leader_election=True)  # fmt: skip
        daemon = Daemon(settings, discovery=clients.discovery(settings), prom=clients.prometheus(settings),
                        sink=None, leader=Follower())  # fmt: skip
        daemon.routes.update(canary_routes(settings, daemon.metrics.registry, daemon.stop_event))
        base = f"http://127.0.0.1:{daemon.serve_http(0)}"
        try:
            daemon.cycle()  # skipped: not the leader
            reply = requests.get(base + ANALYSIS, params=params("reviews"), timeout=30)
            assert reply.status_code == 200 and reply.json()["verdict"] == FAIL
            assert "mesh_exporter_canary_api_verdicts_total" in requests.get(base + "/metrics", timeout=5).text
        finally:
            daemon.stop()


@pytest.mark.parametrize("data", [{"canary": 1}, "canary", [1, 2], None], ids=["object", "string", "numbers", "null"])
def test_a_wrong_shaped_label_index_answer_is_503_never_a_verdict(data: object) -> None:
    """Both subsets served 0 requests, so the analysis asks the label index which versions were ever seen;
    an answer that is not a list of strings is an upstream failure (503, exit 4), never a verdict."""
    empty = json.dumps({"status": "success", "data": {"resultType": "vector", "result": []}}).encode()
    labels = json.dumps({"status": "success", "data": data}).encode()

    def script(method: str, path: str, query: dict[str, list[str]]) -> tuple[int, dict[str, str], bytes]:
        return 200, {"Content-Type": "application/json"}, labels if "/label/" in path else empty

    with ScriptedServer(script) as prometheus, serve(prometheus_url=prometheus.url) as (base, _):
        reply = requests.get(base + ANALYSIS, params=params("reviews"), timeout=30)
        assert reply.status_code == 503 and "verdict" not in reply.text, reply.text
        assert any("/label/" in path for _, path, _ in prometheus.requests)
        code, _, out = analyze_cli(prometheus.url, *(f"--{k}={v}" for k, v in params("reviews").items()))
        assert code == 4 and "could not analyse" in out, out
