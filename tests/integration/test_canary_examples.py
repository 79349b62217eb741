"""deploy/examples work as written: each example's URL, parameters, headers and JSON paths are sent to the
running endpoints exactly as Argo Rollouts and Flagger would send them, and the example's own conditions,
evaluated on the real answers, pass a healthy canary, fail a bad one and hold an inconclusive one; the
token-less examples against a daemon without a token (what Flagger needs), the token variant against one
with it; the Argo template's first measurement, after its initialDelay, passes a canary that has just started."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
import yaml

from exporter.durations import seconds as duration_seconds
from tests.support.canary_api import (
    EQUAL,
    FRESH,
    FRESH_AGE,
    SPARSE,
    WORSE,
    CanaryProm,
    analyze_cli,
    canary_prometheus,
    serve,
)
from tests.support.controllers import argo_measurement, flagger_hook, substitute
from tests.support.prom import PrometheusFactory

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).parents[2] / "deploy" / "examples"
TOKEN = "example-token-0123456789"
PLAIN, WITH_TOKEN = "argo-analysistemplate.yaml", "argo-analysistemplate-token.yaml"


def load(name: str) -> dict[str, Any]:
    doc = yaml.safe_load((EXAMPLES / name).read_text())
    assert isinstance(doc, dict)
    return doc


@pytest.fixture(scope="module")
def prom(make_prometheus: PrometheusFactory) -> CanaryProm:
    return canary_prometheus(make_prometheus)


@pytest.fixture(scope="module")
def apis(prom: CanaryProm) -> Iterator[dict[str, str]]:
    """The daemon without a token (the default, and Flagger's case) and with one, by example file."""
    with serve(prometheus_url=prom.url) as (plain, _), \
            serve(prometheus_url=prom.url, canary_api_token=TOKEN) as (guarded, _):  # fmt: skip
        yield {PLAIN: plain, WITH_TOKEN: guarded}


def local(url: str, base: str) -> str:
    """The example's in-cluster URL sent to the test server instead (path and query unchanged)."""
    parts = urlsplit(url)
    assert (parts.hostname, parts.port) == ("mesh-exporter.istio-system.svc", 8000)
    assert load("service.yaml")["spec"]["ports"][0]["port"] == parts.port
    return base + parts.path + (f"?{parts.query}" if parts.query else "")


def argo_args(template: dict[str, Any], service: str) -> dict[str, str]:
    """What a Rollout passes (the documented snippet's args), plus the token Argo reads from the Secret for
    the args that name one."""
    args = {a["name"]: a.get("value") for a in template["spec"]["args"]}
    args |= {"namespace": "shop", "service": service, "canary-version": "canary", "stable-version": "stable"}
    for arg in template["spec"]["args"]:
        if "valueFrom" in arg:
            assert arg["valueFrom"]["secretKeyRef"] == {"name": "mesh-exporter-canary-api", "key": "token"}
            args[arg["name"]] = TOKEN
    return args


def measure(metric: dict[str, Any], args: dict[str, str], base: str) -> tuple[str, requests.Response]:
    web = metric["provider"]["web"]
    headers = {h["key"]: substitute(h["value"], args) for h in web.get("headers", [])}
    reply = requests.request(
        web.get("method", "GET"), local(substitute(web["url"], args), base), headers=headers,
        timeout=web["timeoutSeconds"],
    )  # fmt: skip
    return argo_measurement(metric, reply.status_code, reply.content), reply


def test_the_plain_template_needs_no_secret() -> None:
    """A secretKeyRef to a missing Secret puts Argo's AnalysisRun in Error: the default example has none."""
    assert all("valueFrom" not in arg for arg in load(PLAIN)["spec"]["args"])
    assert "headers" not in load(PLAIN)["spec"]["metrics"][0]["provider"]["web"]


@pytest.mark.parametrize("example", [PLAIN, WITH_TOKEN])
@pytest.mark.parametrize(
    ("service", "expected"),
    [(EQUAL, "Successful"), (WORSE, "Failed"), (SPARSE, "Inconclusive")],
    ids=["healthy", "bad", "inconclusive"],
)
def test_argo_analysis_templates_judge_real_answers(
    apis: dict[str, str], example: str, service: Any, expected: str
) -> None:
    template = load(example)
    assert template["kind"] == "AnalysisTemplate"
    [metric] = template["spec"]["metrics"]
    outcome, reply = measure(metric, argo_args(template, service.name), apis[example])
    assert outcome == expected, reply.text
    # the endpoint's deadline (20 s by default) is inside Argo's timeout, so Argo sees the 503, not a timeout
    assert metric["provider"]["web"]["timeoutSeconds"] > 20


def test_a_server_with_a_token_refuses_the_plain_template_as_an_error_never_a_verdict(apis: dict[str, str]) -> None:
    template = load(PLAIN)
    [metric] = template["spec"]["metrics"]
    outcome, reply = measure(metric, argo_args(template, "ratings"), apis[WITH_TOKEN])
    assert (outcome, reply.status_code) == ("Error", 401)


@pytest.mark.parametrize("example", [PLAIN, WITH_TOKEN])
def test_the_first_measurement_after_the_initial_delay_passes_a_fresh_healthy_canary(
    prom: CanaryProm, apis: dict[str, str], example: str
) -> None:
    """cart's canary started FRESH_AGE seconds before the Prometheus was built, at its weight shift. Argo
    measures first `initialDelay` after it: a full window of the canary's traffic, so a pass. Measured at
    once (no initialDelay), the same template would have held it as inconclusive."""
    template = load(example)
    [metric] = template["spec"]["metrics"]
    args = argo_args(template, FRESH.name)
    delay = duration_seconds(metric["initialDelay"])
    assert delay >= duration_seconds(args["window"])  # the first window holds the canary's traffic only
    assert delay <= FRESH_AGE  # so the test's "now" is at least initialDelay after the canary's start
    outcome, reply = measure(metric, args, apis[example])
    assert outcome == "Successful", reply.text
    assert reply.json()["evaluated_at"] - prom.fresh_start >= delay
    for at in (prom.fresh_start, prom.fresh_start + 60):  # the weight shift, and a minute later
        code, doc, out = analyze_cli(prom.url, "--namespace=shop", f"--service={FRESH.name}", "--canary=canary",
                                     "--stable=stable", f"--window={args['window']}", "--at", str(int(at)),
                                     "--output", "json")  # fmt: skip
        assert code == 3, out
        assert argo_measurement(metric, 200, json.dumps(doc).encode()) == "Inconclusive"


@pytest.mark.parametrize(
    ("name", "check", "gate"),
    [("podinfo", "ok", "open"), ("bad", "failed", "waiting"), ("thin", "ok", "waiting")],
    ids=["healthy", "bad", "inconclusive"],
)
def test_flagger_canary_webhooks_on_real_answers(apis: dict[str, str], name: str, check: str, gate: str) -> None:
    """Flagger cannot send headers: the example runs against the daemon without a token, as documented."""
    canary = load("flagger-canary.yaml")
    assert canary["kind"] == "Canary"
    outcomes = {}
    for hook in canary["spec"]["analysis"]["webhooks"]:
        metadata = hook.get("metadata", {})
        # the workload analysed is the Canary's target (the Canary's name unless metadata names it)
        assert metadata.get("workload", canary["metadata"]["name"]) == canary["spec"]["targetRef"]["name"]
        # Flagger's payload, for a Canary whose target is `name` (the test mesh's Flagger workloads)
        payload = {"name": name, "namespace": canary["metadata"]["namespace"], "phase": "Progressing",
                   "metadata": metadata}  # fmt: skip
        reply = requests.post(local(hook["url"], apis[PLAIN]), json=payload, timeout=30)
        outcomes[hook["type"]] = flagger_hook(hook["type"], reply.status_code)
    assert outcomes == {"rollout": check, "confirm-promotion": gate}


@pytest.mark.parametrize("example", [PLAIN, "flagger-canary.yaml"])
def test_the_docs_show_the_examples_as_they_are(example: str) -> None:
    docs = (EXAMPLES.parents[1] / "docs" / "canary-service.md").read_text()
    assert f"```yaml\n{(EXAMPLES / example).read_text()}```" in docs
