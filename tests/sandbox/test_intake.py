"""The sandbox Datadog intake, driven by the real `datadog-api-client` (its configuration APIs by raw HTTP)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest
import urllib3
from datadog_api_client import ApiClient, Configuration
from datadog_api_client.exceptions import ApiException
from datadog_api_client.v1.api.authentication_api import AuthenticationApi
from datadog_api_client.v1.api.events_api import EventsApi
from datadog_api_client.v1.model.event_create_request import EventCreateRequest
from datadog_api_client.v2.api.metrics_api import MetricsApi
from datadog_api_client.v2.model.metric_content_encoding import MetricContentEncoding
from datadog_api_client.v2.model.metric_intake_type import MetricIntakeType
from datadog_api_client.v2.model.metric_payload import MetricPayload
from datadog_api_client.v2.model.metric_point import MetricPoint
from datadog_api_client.v2.model.metric_series import MetricSeries

from sandbox.intake import (
    MAX_COMPRESSED_BYTES,
    MAX_DECOMPRESSED_BYTES,
    FakeIntake,
    IntakeRequest,
    Point,
    Reply,
)

API_KEY = "0123456789abcdef-secret-api-key"
APP_KEY = "fedcba9876543210-secret-app-key"


@pytest.fixture
def intake() -> Iterator[FakeIntake]:
    with FakeIntake(api_key=API_KEY) as server:
        yield server


def configuration(url: str, *, api_key: str = API_KEY, timeout: float | None = None) -> Configuration:
    cfg = Configuration(host=url, request_timeout=timeout)  # type: ignore[no-untyped-call]
    cfg.api_key["apiKeyAuth"] = api_key
    cfg.api_key["appKeyAuth"] = APP_KEY
    return cfg


@pytest.fixture
def metrics(intake: FakeIntake) -> Iterator[MetricsApi]:
    with ApiClient(configuration(intake.url)) as api_client:
        yield MetricsApi(api_client)  # type: ignore[no-untyped-call]


def payload(*series: tuple[str, list[str], int, float]) -> MetricPayload:
    return MetricPayload(
        series=[
            MetricSeries(
                metric=metric,
                type=MetricIntakeType.GAUGE,
                points=[MetricPoint(timestamp=ts, value=value)],
                tags=tags,
            )
            for metric, tags, ts, value in series
        ]
    )


SAMPLE = payload(
    ("istio.service.p99_latency_ms", ["service:reviews", "kube_namespace:bookinfo", "env:prod"], 1_700_000_000, 41.5),
    ("istio.service.success_rate_pct", ["service:reviews", "kube_namespace:bookinfo"], 1_700_000_000, 100),
)
SAMPLE_POINTS = [
    Point(
        "istio.service.p99_latency_ms",
        ("env:prod", "kube_namespace:bookinfo", "service:reviews"),
        1_700_000_000,
        41.5,
        3,
    ),
    Point("istio.service.success_rate_pct", ("kube_namespace:bookinfo", "service:reviews"), 1_700_000_000, 100.0, 3),
]


@pytest.mark.parametrize(
    ("encoding", "header"),
    [(MetricContentEncoding.DEFLATE, "deflate"), (MetricContentEncoding.GZIP, "gzip"), (None, None)],
)
def test_series_are_decoded_exactly(
    intake: FakeIntake, metrics: MetricsApi, encoding: MetricContentEncoding | None, header: str | None
) -> None:
    if encoding is None:  # the client sends identity when no encoding is given
        response = metrics.submit_metrics(body=SAMPLE)
    else:
        response = metrics.submit_metrics(body=SAMPLE, content_encoding=encoding)
    assert response.to_dict() == {"errors": []}  # type: ignore[no-untyped-call]
    assert intake.points() == SAMPLE_POINTS
    (request,) = intake.requests
    assert (request.method, request.path, request.status) == ("POST", "/api/v2/series", 202)
    assert request.content_encoding == header
    assert request.decoded_length is not None
    if header is None:
        assert request.raw_length == request.decoded_length
    else:
        assert request.raw_length != request.decoded_length
    assert request.json["series"][0]["metric"] == "istio.service.p99_latency_ms"


def test_decompressed_payload_over_the_limit_is_413(intake: FakeIntake, metrics: MetricsApi) -> None:
    huge_tags = [f"t{i}:" + "x" * 9_000 for i in range(600)]  # ~5.4 MB of JSON, a few KB deflated
    with pytest.raises(ApiException) as caught:
        metrics.submit_metrics(
            body=payload(("m", huge_tags, 1_700_000_000, 1.0)), content_encoding=MetricContentEncoding.DEFLATE
        )
    assert caught.value.status == 413
    assert caught.value.body == {"errors": ["Payload too large"]}
    (request,) = intake.requests
    assert request.raw_length < MAX_COMPRESSED_BYTES
    assert request.decoded_length is not None and request.decoded_length > MAX_DECOMPRESSED_BYTES
    assert intake.points() == []


def test_compressed_payload_over_the_limit_is_413(intake: FakeIntake, metrics: MetricsApi) -> None:
    noise = [f"t{i}:" + os.urandom(3_000).hex() for i in range(200)]  # random hex: gzip halves it at best
    with pytest.raises(ApiException) as caught:
        metrics.submit_metrics(
            body=payload(("m", noise, 1_700_000_000, 1.0)), content_encoding=MetricContentEncoding.GZIP
        )
    assert caught.value.status == 413
    assert intake.requests[0].raw_length > MAX_COMPRESSED_BYTES
    assert intake.points() == []


def test_scripted_429_surfaces_with_datadog_rate_limit_headers(intake: FakeIntake, metrics: MetricsApi) -> None:
    intake.script(Reply.rate_limited(limit=500, period=10, reset=7, name="submit_metrics"))
    with pytest.raises(ApiException) as caught:
        metrics.submit_metrics(body=SAMPLE, content_encoding=MetricContentEncoding.DEFLATE)
    assert caught.value.status == 429
    headers = caught.value.headers
    assert headers is not None
    assert (headers["X-RateLimit-Limit"], headers["X-RateLimit-Period"]) == ("500", "10")
    assert (headers["X-RateLimit-Remaining"], headers["X-RateLimit-Reset"]) == ("0", "7")
    assert headers["X-RateLimit-Name"] == "submit_metrics"
    assert intake.points() == []  # a request answered with an error delivered nothing

    metrics.submit_metrics(body=SAMPLE, content_encoding=MetricContentEncoding.DEFLATE)  # the script is used up
    assert intake.points() == SAMPLE_POINTS
    assert [r.status for r in intake.requests] == [429, 202]


def test_scripted_replies_are_used_in_order(intake: FakeIntake, metrics: MetricsApi) -> None:
    intake.script(Reply(500), Reply(503, body={"errors": ["upstream down"]}))
    statuses = []
    for _ in range(3):
        try:
            metrics.submit_metrics(body=SAMPLE)
            statuses.append(202)
        except ApiException as e:
            statuses.append(int(e.status))
            if e.status == 503:
                assert e.body == {"errors": ["upstream down"]}
    assert statuses == [500, 503, 202]
    assert intake.points() == SAMPLE_POINTS


def test_api_keys_never_appear_in_the_records(intake: FakeIntake, metrics: MetricsApi) -> None:
    metrics.submit_metrics(body=SAMPLE, content_encoding=MetricContentEncoding.GZIP)
    urllib3.PoolManager().request(  # the metrics API sends no application key; a raw request does
        "GET", f"{intake.url}/api/v1/validate", headers={"DD-API-KEY": API_KEY, "DD-APPLICATION-KEY": APP_KEY}
    )
    submitted, validated = intake.requests
    assert submitted.headers["DD-API-KEY"] == "<redacted>"
    assert submitted.headers["dd-api-key"] == "<redacted>"
    assert validated.headers["dd-application-key"] == "<redacted>"
    assert (submitted.api_key_valid, validated.api_key_valid) == (True, True)
    assert validated.status == 200
    assert API_KEY not in repr(intake.requests)
    assert APP_KEY not in repr(intake.requests)


def test_wrong_api_key_is_403(intake: FakeIntake) -> None:
    with ApiClient(configuration(intake.url, api_key="not-the-key")) as api_client:
        with pytest.raises(ApiException) as caught:
            MetricsApi(api_client).submit_metrics(body=SAMPLE)  # type: ignore[no-untyped-call]
        assert caught.value.status == 403
        assert caught.value.body == {"errors": ["Forbidden"]}
        with pytest.raises(ApiException) as caught:
            AuthenticationApi(api_client).validate()  # type: ignore[no-untyped-call]
        assert caught.value.status == 403
    assert intake.points() == []
    assert [r.api_key_valid for r in intake.requests] == [False, False]
    assert "not-the-key" not in repr(intake.requests)


def test_validate_with_the_right_key(intake: FakeIntake) -> None:
    with ApiClient(configuration(intake.url)) as api_client:
        assert AuthenticationApi(api_client).validate().valid is True  # type: ignore[no-untyped-call]


def test_events_api(intake: FakeIntake) -> None:
    with ApiClient(configuration(intake.url)) as api_client:
        response = EventsApi(api_client).create_event(  # type: ignore[no-untyped-call]
            body=EventCreateRequest(
                title="mTLS coverage report", text="94.1 % of requests", tags=["kube_cluster_name:eks-1"]
            )
        )
    assert response.status == "ok"
    assert response.event.title == "mTLS coverage report"
    assert response.event.id == 1
    assert intake.events() == [
        {"title": "mTLS coverage report", "text": "94.1 % of requests", "tags": ["kube_cluster_name:eks-1"]}
    ]


def test_dynamic_fault_by_request_content(intake: FakeIntake, metrics: MetricsApi) -> None:
    def fail_latency(request: IntakeRequest) -> Reply | None:
        names = {s.get("metric") for s in (request.json or {}).get("series", [])}
        return Reply(500) if "istio.service.p99_latency_ms" in names else None

    intake.set_fault(fail_latency)
    with pytest.raises(ApiException) as caught:
        metrics.submit_metrics(body=SAMPLE)
    assert caught.value.status == 500
    metrics.submit_metrics(body=payload(("istio.service.request_rate", ["service:a"], 1_700_000_000, 2.5)))
    intake.set_fault(None)
    metrics.submit_metrics(body=SAMPLE)
    assert [p.metric for p in intake.points()] == [
        "istio.service.request_rate",
        "istio.service.p99_latency_ms",
        "istio.service.success_rate_pct",
    ]


def test_slow_success_times_the_client_out_but_is_accepted(intake: FakeIntake) -> None:
    intake.script(Reply(202, delay_s=0.6))
    with (
        ApiClient(configuration(intake.url, timeout=0.15)) as api_client,
        pytest.raises(urllib3.exceptions.ReadTimeoutError),
    ):
        MetricsApi(api_client).submit_metrics(body=SAMPLE)  # type: ignore[no-untyped-call]
    assert intake.points() == SAMPLE_POINTS  # delivered although the client saw no answer: a retry duplicates


def test_dropped_connection(intake: FakeIntake, metrics: MetricsApi) -> None:
    intake.script(Reply(503, drop_connection=True))
    with pytest.raises(urllib3.exceptions.ProtocolError):
        metrics.submit_metrics(body=SAMPLE)
    assert intake.points() == []
    assert intake.requests[0].status is None
    metrics.submit_metrics(body=SAMPLE)
    assert intake.points() == SAMPLE_POINTS


def test_malformed_series_is_400(intake: FakeIntake) -> None:
    http = urllib3.PoolManager()
    response = http.request(
        "POST",
        f"{intake.url}/api/v2/series",
        body=json.dumps({"series": [{"metric": "m", "points": [{"timestamp": "now", "value": 1}]}]}),
        headers={"DD-API-KEY": API_KEY, "Content-Type": "application/json"},
    )
    assert response.status == 400
    assert "timestamp" in json.loads(response.data)["errors"][0]
    assert intake.points() == []


# ---- the configuration APIs `datadog setup` uses -------------------------------------------------------------
def config_request(intake: FakeIntake, method: str, path: str, body: Any = None, *, app_key: bool = True) -> Any:
    headers = {"DD-API-KEY": API_KEY, "Content-Type": "application/json"}
    headers |= {"DD-APPLICATION-KEY": APP_KEY} if app_key else {}
    data = json.dumps(body).encode() if body is not None else None
    response = urllib3.PoolManager().request(method, f"{intake.url}{path}", body=data, headers=headers)
    return response.status, json.loads(response.data)


@pytest.fixture
def config_intake() -> Iterator[FakeIntake]:
    with FakeIntake(api_key=API_KEY, app_key=APP_KEY) as server:
        yield server


def test_metadata_is_refused_for_a_metric_never_received_then_stored(config_intake: FakeIntake) -> None:
    body = {"type": "gauge", "unit": "millisecond", "description": "p99"}
    assert config_request(config_intake, "PUT", "/api/v1/metrics/test.metric", body) == (
        404, {"errors": ["metric_name not found"]}
    )  # fmt: skip
    assert config_request(config_intake, "GET", "/api/v1/metrics/test.metric")[0] == 404
    with ApiClient(configuration(config_intake.url)) as api_client:
        MetricsApi(api_client).submit_metrics(body=SAMPLE)  # type: ignore[no-untyped-call]
    name = SAMPLE_POINTS[0].metric
    assert config_request(config_intake, "PUT", "/api/v1/metrics/test.metric", body)[0] == 404  # still unknown
    assert config_request(config_intake, "PUT", f"/api/v1/metrics/{name}", body) == (200, body)
    assert config_request(config_intake, "GET", f"/api/v1/metrics/{name}") == (200, body)
    assert config_intake.metadata() == {name: body}
    assert config_request(config_intake, "PUT", f"/api/v1/metrics/{name}", {"unit": "ms", "units": "x"})[0] == 400
    assert config_request(config_intake, "PUT", f"/api/v1/metrics/{name}", body, app_key=False)[0] == 403
    assert config_intake.metadata() == {name: body}


def test_dashboards_are_created_listed_by_page_and_updated(config_intake: FakeIntake) -> None:
    ids = []
    for i in range(5):
        body = {"title": f"d{i}", "description": "x", "layout_type": "ordered", "widgets": []}
        status, created = config_request(config_intake, "POST", "/api/v1/dashboard", body)
        assert status == 200 and created["title"] == f"d{i}"
        ids.append(created["id"])
    assert len(set(ids)) == 5
    status, page = config_request(config_intake, "GET", "/api/v1/dashboard?count=2&start=2")
    assert status == 200 and [d["title"] for d in page["dashboards"]] == ["d2", "d3"]
    everything = config_request(config_intake, "GET", "/api/v1/dashboard")[1]["dashboards"]
    assert [(d["id"], d["title"]) for d in everything] == [(i, f"d{n}") for n, i in enumerate(ids)]
    assert config_request(config_intake, "GET", "/api/v1/dashboard?count=many")[0] == 400
    new = {"title": "renamed", "layout_type": "ordered", "widgets": [{"definition": {"type": "note"}}]}
    assert config_request(config_intake, "PUT", f"/api/v1/dashboard/{ids[0]}", new)[0] == 200
    stored = config_request(config_intake, "GET", f"/api/v1/dashboard/{ids[0]}")[1]
    assert stored["title"] == "renamed" and stored["widgets"] == new["widgets"] and stored["id"] == ids[0]
    assert config_request(config_intake, "PUT", "/api/v1/dashboard/nope", new)[0] == 404
    assert config_request(config_intake, "POST", "/api/v1/dashboard", {"title": "no layout"})[0] == 400
    assert len(config_intake.dashboards()) == 5


def test_monitors_are_created_listed_by_tag_and_updated(config_intake: FakeIntake) -> None:
    ours = {"type": "query alert", "query": "avg(last_5m):avg:m{*} > 1", "name": "a", "tags": ["managed-by:x", "t:1"]}
    theirs = {"type": "query alert", "query": "avg(last_5m):avg:m{*} > 2", "name": "b", "tags": ["t:1"]}
    first = config_request(config_intake, "POST", "/api/v1/monitor", ours)[1]["id"]
    second = config_request(config_intake, "POST", "/api/v1/monitor", theirs)[1]["id"]
    assert first != second
    listed = config_request(config_intake, "GET", "/api/v1/monitor?monitor_tags=managed-by:x")[1]
    assert [m["id"] for m in listed] == [first]
    both = config_request(config_intake, "GET", "/api/v1/monitor?monitor_tags=t:1")[1]
    assert sorted(m["id"] for m in both) == sorted([first, second])
    status, updated = config_request(config_intake, "PUT", f"/api/v1/monitor/{first}", {"query": "avg:m{*} > 3"})
    assert status == 200 and updated["query"] == "avg:m{*} > 3" and updated["name"] == "a"  # a PUT merges
    assert config_intake.monitors()[second]["query"] == theirs["query"]
    assert config_request(config_intake, "PUT", "/api/v1/monitor/99999", {"query": "q"})[0] == 404
    assert config_request(config_intake, "POST", "/api/v1/monitor", {"name": "no type"})[0] == 400
    assert config_request(config_intake, "GET", "/api/v1/monitor", app_key=False)[0] == 403
