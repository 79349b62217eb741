"""Requests to the canary analysis (endpoint parameters, Flagger payloads, CLI flags): validation and mapping."""

from __future__ import annotations

import pytest

from exporter import durations
from exporter.canary.analysis import Thresholds
from exporter.canary.measure import Scope
from exporter.canary.service import (
    InvalidRequest,
    flagger_request,
    json_object,
    query_values,
    service_request,
    thresholds_from,
)
from exporter.cli.common import duration_flag
from exporter.errors import ConfigError
from exporter.model import ServiceRef
from exporter.query import promql

BASE = {"namespace": "shop", "service": "reviews", "canary": "v2", "stable": "v1"}


def test_defaults_and_scope_of_a_service_request() -> None:
    r = service_request(BASE)
    assert r.scope == Scope.service(ServiceRef("shop", "reviews"))
    assert (r.canary, r.stable, r.window, r.label, r.thresholds) == ("v2", "v1", "5m", "destination_version",
                                                                      Thresholds())  # fmt: skip
    same = service_request({**BASE, "min_requests": "100", "confidence": 0.95})
    assert same == r and hash(same) == hash(r)  # equal requests share a cache entry


def test_thresholds_accept_numbers_and_strings() -> None:
    t = thresholds_from({"min_success_pct": "99.5", "max_p99_ms": 300, "min_requests": "50"})
    assert (t.min_success_pct, t.max_p99_ms, t.min_requests) == (99.5, 300.0, 50)


@pytest.mark.parametrize(
    ("values", "field", "message"),
    [
        ({"namespace": "shop"}, "service", "required (or workload)"),
        ({"service": "reviews", "canary": "v2", "stable": "v1"}, "namespace", "required"),
        ({**BASE, "workload": "reviews"}, "workload", "give service or workload, not both"),
        ({"namespace": "shop", "workload": "Reviews"}, "workload", "not a Kubernetes name"),
        ({**BASE, "window": "99999999999999999999y"}, "window", ""),
        ({**BASE, "namespace": "a" * 64}, "namespace", "not a Kubernetes name"),
        ({**BASE, "namespace": "-shop"}, "namespace", "not a Kubernetes name"),
        ({**BASE, "service": "9lives"}, "service", "not a Kubernetes name"),
        ({**BASE, "canary": 'v2"} or up{'}, "canary", "not a Kubernetes label value"),
        ({**BASE, "stable": ""}, "stable", "required"),
        ({**BASE, "version_label": "__name__ "}, "version_label", "not a Prometheus label name"),
        ({**BASE, "window": "-5m"}, "window", "not a PromQL duration"),
        ({**BASE, "min_requests": "1.5"}, "min_requests", "not a whole number"),
        ({**BASE, "max_p99_ms": "nan"}, "max_p99_ms", "not a finite number"),
        ({**BASE, "max_p99_ratio": "0"}, "max_p99_ratio", "must be > 0"),
        ({**BASE, "min_success_pct": "abc"}, "min_success_pct", "not a number"),
        ({**BASE, "thresholds": "x"}, "thresholds", "unknown parameter"),
    ],
)
def test_invalid_requests_name_the_field(values: dict[str, object], field: str, message: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        service_request(values)
    assert caught.value.field == field and message in caught.value.message


def test_flagger_payload_maps_to_workloads() -> None:
    r = flagger_request({"name": "podinfo", "namespace": "test", "phase": "Progressing", "metadata": None})
    assert (r.canary, r.stable, r.label, r.name) == ("podinfo", "podinfo-primary", "destination_workload", "podinfo")
    assert [str(m) for m in r.scope.matchers] == [
        'destination_workload_namespace="test"',
        'destination_workload=~"podinfo|podinfo-primary"',
    ]
    over = flagger_request({"name": "podinfo", "namespace": "test", "metadata": {"max_p99_ms": "500", "window": "2m"}})
    assert (over.thresholds.max_p99_ms, over.window) == (500.0, "2m")
    for payload, field in (
        ({"namespace": "test"}, "name"),
        ({"name": "podinfo", "namespace": "test", "metadata": ["x"]}, "metadata"),
        ({"name": "podinfo", "namespace": "test", "metadata": {"namespace": "other"}}, "namespace"),
    ):
        with pytest.raises(InvalidRequest) as caught:
            flagger_request(payload)
        assert caught.value.field == field


@pytest.mark.parametrize("window", ["1s", "5m", "366d", "367d", "3660d", "3661d", "99999999999999999999y", "0s"])
def test_the_endpoint_accepts_the_windows_the_cli_accepts(window: str) -> None:
    """One bound for `window` whether it comes as an endpoint parameter or as `canary analyze --window`."""
    try:
        duration_flag("--window", window)
        cli_accepts = True
    except ConfigError:
        cli_accepts = False
    try:
        endpoint_accepts = service_request({**BASE, "window": window}).window == window
    except InvalidRequest as e:
        assert e.field == "window"
        endpoint_accepts = False
    assert endpoint_accepts == cli_accepts
    try:
        valid = 0 < durations.seconds(window) <= durations.MAX_SECONDS
    except ValueError:  # not a duration at all (or with more digits than any sane one)
        valid = False
    assert cli_accepts == valid


def test_a_workload_request_is_flaggers_scope() -> None:
    r = service_request({"namespace": "test", "workload": "podinfo", "service": None, "canary": ""})
    assert r == flagger_request({"name": "podinfo", "namespace": "test"})
    assert (r.canary, r.stable, r.label, r.name) == ("podinfo", "podinfo-primary", "destination_workload", "podinfo")
    versions = service_request({"namespace": "test", "workload": "podinfo", "canary": "v2", "stable": "v1",
                                "version_label": "destination_version"})  # fmt: skip
    assert (versions.scope, versions.canary, versions.label) == (r.scope, "v2", "destination_version")


def test_flagger_metadata_names_the_workload_when_the_canary_is_named_otherwise() -> None:
    r = flagger_request({"name": "podinfo-canary", "namespace": "test", "metadata": {"workload": "podinfo"}})
    assert (r.canary, r.stable, r.name) == ("podinfo", "podinfo-primary", "podinfo")
    assert [str(m) for m in r.scope.matchers] == [
        'destination_workload_namespace="test"',
        'destination_workload=~"podinfo|podinfo-primary"',
    ]
    with pytest.raises(InvalidRequest, match=r"^workload: not a Kubernetes name"):
        flagger_request({"name": "podinfo", "namespace": "test", "metadata": {"workload": "Podinfo"}})


def test_query_strings_and_bodies() -> None:
    assert query_values("a=1&b=x%20y") == {"a": "1", "b": "x y"}
    with pytest.raises(InvalidRequest, match="given more than once"):
        query_values("a=1&a=2")
    assert json_object(b"") == {}
    with pytest.raises(InvalidRequest, match="larger than"):
        json_object(b" " * (64 * 1024 + 1))


def test_exact_count_query_text() -> None:
    text = promql.count_sum(("v",), window="5m", matchers=[promql.Matcher("a", "b")])
    series = 'istio_requests_total{reporter="destination",a="b"}'
    assert text == (
        f"sum by (v) (((last_over_time({series}[5m]) - last_over_time({series}[5m] offset 5m)) >= 0)"
        f" or last_over_time({series}[5m]))"
    )
    assert "rate(" not in text and "increase(" not in text
