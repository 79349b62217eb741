"""The Prometheus client's error paths, through prometheus-api-client and requests (`responses`)."""

import json
import math
from urllib.parse import parse_qs, urlparse

import pytest
import requests
import responses
from structlog.testing import capture_logs

from exporter.errors import QueryError
from exporter.query.prometheus import PrometheusClient, vector_by
from exporter.retry import RetryPolicy

URL = "http://prom.test:9090"
QUERY_URL = f"{URL}/api/v1/query"
NO_WAIT = RetryPolicy(attempts=3, base_wait=0.0, sleep=lambda s: None)


def ok_body(*samples: tuple[dict[str, str], str], warnings: list[str] | None = None) -> dict:  # type: ignore[type-arg]
    body: dict = {  # type: ignore[type-arg]
        "status": "success",
        "data": {"resultType": "vector", "result": [{"metric": m, "value": [1.0, v]} for m, v in samples]},
    }
    if warnings:
        body["warnings"] = warnings
    return body


def client(**kw: object) -> PrometheusClient:
    kw.setdefault("retry", NO_WAIT)
    return PrometheusClient(URL, **kw)  # type: ignore[arg-type]


@responses.activate
def test_query_sends_time_timeout_and_headers_and_parses_special_values() -> None:
    responses.get(QUERY_URL, json=ok_body(({"a": "1"}, "2.5"), ({"a": "2"}, "NaN"), ({"a": "3"}, "+Inf")))
    c = client(headers={"X-Scope-OrgID": "team-a"}, timeout=7.5)
    samples = c.query("up", at=1700000000)
    assert samples[0] == ({"a": "1"}, 2.5)
    assert math.isnan(samples[1][1]) and samples[2][1] == math.inf
    sent = responses.calls[0].request
    params = parse_qs(urlparse(sent.url).query)
    assert params == {
        "query": ["up"],
        "time": ["1700000000.000"],
        "timeout": ["7500ms"],
    }  # whole ms: Prometheus refuses "7.5s"
    assert sent.headers["X-Scope-OrgID"] == "team-a"
    assert c.requests_made == 1


@responses.activate
def test_server_errors_are_retried_then_succeed() -> None:
    responses.get(QUERY_URL, status=503, body="overloaded")
    responses.get(QUERY_URL, json=ok_body(({"a": "1"}, "1")))
    c = client()
    with capture_logs() as captured:
        assert c.query("up", at=1) == [({"a": "1"}, 1.0)]
    logs = [e for e in captured if e["log_level"] != "debug"]
    assert c.requests_made == 2
    assert logs[0]["event"] == "attempt 1/3 failed; will retry"
    assert "503" in logs[0]["error"]


@responses.activate
def test_bad_query_is_not_retried_and_carries_prometheus_error_text_and_the_query() -> None:
    body = {"status": "error", "errorType": "bad_data", "error": 'parse error: unexpected "}"'}
    responses.get(QUERY_URL, status=400, json=body)
    c = client()
    with pytest.raises(QueryError) as info:
        c.query("sum(", at=1)
    assert info.value.status == 400 and not info.value.retryable
    assert "bad_data: parse error" in str(info.value) and info.value.query == "sum("
    assert c.requests_made == 1


@responses.activate
def test_persistent_outage_gives_up_after_the_policy_attempts() -> None:
    responses.get(QUERY_URL, status=502)
    c = client()
    with pytest.raises(QueryError) as info:
        c.query("up", at=1)
    assert info.value.status == 502 and info.value.retryable
    assert c.requests_made == 3


@responses.activate
def test_retry_after_is_honoured() -> None:
    responses.get(QUERY_URL, status=429, headers={"Retry-After": "4"})
    responses.get(QUERY_URL, json=ok_body())
    waits: list[float] = []
    c = PrometheusClient(URL, retry=RetryPolicy(attempts=2, base_wait=0.1, max_wait=10, sleep=waits.append))
    c.query("up", at=1)
    assert waits == [4.0]


@responses.activate
def test_timeouts_and_refused_connections_become_retryable_query_errors() -> None:
    responses.get(QUERY_URL, body=requests.Timeout("read timed out"))
    responses.get(QUERY_URL, body=requests.ConnectionError("refused"))
    responses.get(QUERY_URL, body=requests.ConnectionError("refused"))
    with pytest.raises(QueryError) as info:
        client().query("up", at=1)
    assert info.value.retryable and info.value.status == 0
    assert "cannot reach Prometheus" in str(info.value)


@responses.activate
def test_malformed_json_is_a_query_error() -> None:
    responses.get(QUERY_URL, body="<html>proxy error</html>", status=200)
    with pytest.raises(QueryError, match="malformed answer"):
        client(retry=RetryPolicy(attempts=1)).query("up", at=1)


@responses.activate
def test_warnings_are_logged_with_the_query() -> None:
    responses.get(QUERY_URL, json=ok_body(warnings=["partial response: store X down"]))
    with capture_logs() as captured:
        client().query("up", at=1)
    assert [e for e in captured if e["log_level"] != "debug"] == [
        {
            "event": "prometheus warning",
            "warning": "partial response: store X down",
            "query": "up",
            "log_level": "warning",
        }
    ]


def test_vector_by_sets_nan_aside_and_rejects_duplicate_series() -> None:
    samples = [({"n": "a", "s": "x"}, 1.0), ({"n": "b", "s": "x"}, float("nan"))]
    vector = vector_by(samples, ("n", "s"), query="q", set_aside_non_finite=True)
    assert vector == {("a", "x"): 1.0} and vector.non_finite == {("b", "x")}
    with pytest.raises(QueryError, match="duplicate series"):
        vector_by([*samples, ({"n": "b", "s": "x"}, 2.0)], ("n", "s"), query="q", set_aside_non_finite=True)


def test_ok_body_shape_is_what_prometheus_sends() -> None:
    # guard for the fixtures above: the same shape the real server returns (see integration tests)
    assert json.loads(json.dumps(ok_body()))["data"]["resultType"] == "vector"


def test_a_refused_connection_on_a_real_socket_is_a_retryable_query_error() -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    c = PrometheusClient(f"http://127.0.0.1:{port}", retry=RetryPolicy(attempts=2, base_wait=0.0, sleep=lambda s: None))
    with pytest.raises(QueryError) as info:
        c.query("up", at=1)
    assert info.value.kind == "connection" and info.value.retryable and c.requests_made == 2


@pytest.mark.parametrize(
    "headers", [{"X-Scope-OrgID": "équipe-€-0123"}, {"X-Token": " leading-space-0123"}, {"X-Token": "a\nb-0123"}]
)
def test_a_request_that_cannot_be_sent_is_a_local_error_not_a_malformed_answer(headers: dict[str, str]) -> None:
    """Settings refuse such values at load; should one reach the client anyway, the error says the request
    could not be sent (not retried, never 'malformed answer'), without quoting the header value."""
    calls: list[float] = []
    client = PrometheusClient(
        "http://127.0.0.1:9", headers=headers, retry=RetryPolicy(attempts=3, base_wait=0.01, sleep=calls.append)
    )
    with pytest.raises(QueryError) as info:
        client.query("up", at=1_800_000_000)
    assert info.value.kind == "invalid_request" and not info.value.retryable and calls == []
    assert "0123" not in str(info.value) and "malformed" not in str(info.value)
