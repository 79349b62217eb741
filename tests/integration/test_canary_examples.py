"""deploy/examples work as written: each example's URL, parameters, headers and JSON paths are sent to the
running endpoints exactly as Argo Rollouts and Flagger would send them, and the example's own conditions,
evaluated on the real answers, pass a healthy canary, fail a bad one and hold an inconclusive one."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
import yaml

from tests.support.canary_api import EQUAL, SPARSE, WORSE, CanaryProm, canary_prometheus, serve
from tests.support.controllers import argo_measurement, flagger_hook, substitute
from tests.support.prom import PrometheusFactory

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).parents[2] / "deploy" / "examples"
TOKEN = "example-token-0123456789"


def load(name: str) -> dict[str, Any]:
    doc = yaml.safe_load((EXAMPLES / name).read_text())
    assert isinstance(doc, dict)
    return doc


@pytest.fixture(scope="module")
def api(make_prometheus: PrometheusFactory) -> Iterator[str]:
    prom: CanaryProm = canary_prometheus(make_prometheus)
    with serve(prometheus_url=prom.url, canary_api_token=TOKEN) as (base, _):
        yield base


def local(url: str, base: str) -> str:
    """The example's in-cluster URL sent to the test server instead (path and query unchanged)."""
    parts = urlsplit(url)
    assert (parts.hostname, parts.port) == ("mesh-exporter.istio-system.svc", 8000)
    assert load("service.yaml")["spec"]["ports"][0]["port"] == parts.port
    return base + parts.path + (f"?{parts.query}" if parts.query else "")


@pytest.mark.parametrize(
    ("service", "expected"),
    [(EQUAL, "Successful"), (WORSE, "Failed"), (SPARSE, "Inconclusive")],
    ids=["healthy", "bad", "inconclusive"],
)
def test_argo_analysis_template_judges_real_answers(api: str, service: Any, expected: str) -> None:
    template = load("argo-analysistemplate.yaml")
    assert template["kind"] == "AnalysisTemplate"
    args = {a["name"]: a.get("value") for a in template["spec"]["args"]}
    # what a Rollout passes, and the token Argo reads from the Secret
    args |= {"namespace": "shop", "service": service.name, "canary-version": "canary",
             "stable-version": "stable", "api-token": TOKEN}  # fmt: skip
    [metric] = template["spec"]["metrics"]
    web = metric["provider"]["web"]
    headers = {h["key"]: substitute(h["value"], args) for h in web.get("headers", [])}
    reply = requests.request(
        web.get("method", "GET"), local(substitute(web["url"], args), api), headers=headers,
        timeout=web["timeoutSeconds"],
    )  # fmt: skip
    assert argo_measurement(metric, reply.status_code, reply.content) == expected
    # the endpoint's deadline (20 s by default) is inside Argo's timeout, so Argo sees the 503, not a timeout
    assert web["timeoutSeconds"] > 20


def test_argo_without_the_token_is_an_error_never_a_verdict(api: str) -> None:
    [metric] = load("argo-analysistemplate.yaml")["spec"]["metrics"]
    args = {"namespace": "shop", "service": "ratings", "canary-version": "canary", "stable-version": "stable",
            "window": "5m"}  # fmt: skip
    reply = requests.get(local(substitute(metric["provider"]["web"]["url"], args), api), timeout=30)
    assert argo_measurement(metric, reply.status_code, reply.content) == "Error"


@pytest.mark.parametrize(
    ("name", "check", "gate"),
    [("podinfo", "ok", "open"), ("bad", "failed", "waiting"), ("thin", "ok", "waiting")],
    ids=["healthy", "bad", "inconclusive"],
)
def test_flagger_canary_webhooks_on_real_answers(api: str, name: str, check: str, gate: str) -> None:
    canary = load("flagger-canary.yaml")
    assert canary["kind"] == "Canary" and canary["spec"]["targetRef"]["name"] == canary["metadata"]["name"]
    outcomes = {}
    for hook in canary["spec"]["analysis"]["webhooks"]:
        # Flagger's payload; this test's server runs with a token, which Flagger cannot send: it is added here
        payload = {"name": name, "namespace": canary["metadata"]["namespace"], "phase": "Progressing",
                   "metadata": hook.get("metadata", {})}  # fmt: skip
        reply = requests.post(local(hook["url"], api), json=payload, timeout=30,
                              headers={"Authorization": f"Bearer {TOKEN}"})  # fmt: skip
        outcomes[hook["type"]] = flagger_hook(hook["type"], reply.status_code)
    assert outcomes == {"rollout": check, "confirm-promotion": gate}
