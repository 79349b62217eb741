"""The Datadog sink: points, size-bounded batches, retries, 413 splitting (transport injected); events over HTTP."""

import json
import random
import zlib
from typing import Any

import pytest

from exporter.errors import SubmitError
from exporter.model import METRICS, Figures, ServiceRef
from exporter.retry import RetryPolicy
from exporter.sink.datadog import (
    MAX_COMPRESSED_BYTES,
    MAX_DECOMPRESSED_BYTES,
    DatadogAPI,
    DatadogSink,
    Point,
    batches,
    deflated,
    points_for,
    service_tags,
)
from sandbox.intake import FakeIntake


class Recorder:
    """A SeriesTransport that records payloads and fails as scripted."""

    def __init__(self, failures: list[SubmitError] | None = None, *, max_points: int | None = None) -> None:
        self.payloads: list[list[dict[str, Any]]] = []
        self.raw: list[bytes] = []  # as sent: deflated
        self.failures = failures or []
        self.max_points = max_points
        self.attempts = 0

    def send_series(self, payload: bytes) -> None:
        series = json.loads(zlib.decompress(payload))["series"]
        self.attempts += 1
        if self.max_points is not None and len(series) > self.max_points:
            raise SubmitError("POST /api/v2/series -> 413: Payload too large", status=413)
        if self.failures:
            raise self.failures.pop(0)
        self.payloads.append(series)
        self.raw.append(payload)

    def send_event(self, event: dict[str, Any]) -> None:
        raise AssertionError("not used")


def sink(transport: Recorder, waits: list[float] | None = None, **kw: Any) -> DatadogSink:
    sleep = waits.append if waits is not None else (lambda s: None)
    return DatadogSink(transport, retry=RetryPolicy(attempts=3, base_wait=1.0, max_wait=60, sleep=sleep), **kw)


def by_figure(figures: dict[ServiceRef, Figures]) -> dict[str, dict[ServiceRef, float]]:
    """Figures per service as the cycle hands them to points_for: values per figure, None left out."""
    out: dict[str, dict[ServiceRef, float]] = {}
    for service, f in figures.items():
        for name, value in f.values().items():
            if value is not None:
                out.setdefault(name, {})[service] = value
    return out


def test_points_carry_service_namespace_and_extra_tags_and_skip_missing_figures() -> None:
    figures = {
        ServiceRef("shop", "cart"): Figures(12.5, 99.5, 0.0, 42.0),
        ServiceRef("legacy", "cart"): Figures(1.0, 100.0, 100.0, None),
        ServiceRef("shop", "idle"): Figures(),
    }
    tags_of = {s: service_tags(s, ("env:prod",)) for s in figures}
    points = points_for(by_figure(figures), tags_of, at=1700000000)
    got = {(p.metric, p.tags, p.value) for p in points}
    shop = ("env:prod", "service:cart", "kube_service:cart", "kube_namespace:shop")
    legacy = ("env:prod", "service:cart", "kube_service:cart", "kube_namespace:legacy")
    assert got == {
        (METRICS["request_rate"], shop, 12.5), (METRICS["success_rate_pct"], shop, 99.5),
        (METRICS["mtls_coverage_pct"], shop, 0.0), (METRICS["p99_latency_ms"], shop, 42.0),
        (METRICS["request_rate"], legacy, 1.0), (METRICS["success_rate_pct"], legacy, 100.0),
        (METRICS["mtls_coverage_pct"], legacy, 100.0),
    }  # fmt: skip
    assert {p.timestamp for p in points} == {1700000000}


def test_a_point_is_encoded_exactly_as_json_would_encode_its_series() -> None:
    rng = random.Random(7)
    for _ in range(2000):
        name = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789-") for _ in range(rng.randint(1, 63)))
        value = rng.choice([0.0, 100.0, rng.random() * 10 ** rng.randint(-300, 300), -rng.random() / 3, 1e-05])
        tags = (f"service:{name}", f"kube_namespace:{name[:20]}", "env:prod", 'team:"quoted" \\ é')
        p = Point(rng.choice(list(METRICS.values())), value, 1_800_000_000, tags)
        assert json.loads(p.encoded()) == {
            "metric": p.metric,
            "type": 3,  # gauge
            "points": [{"timestamp": 1_800_000_000, "value": value}],
            "tags": list(tags),
        }


def many_points(n: int) -> list[Point]:
    return [
        Point(
            "istio.service.success_rate_pct",
            99.12345678901234,
            1_700_000_000,
            (f"service:svc-{i}", "kube_namespace:ns"),
        )
        for i in range(n)
    ]


def test_batches_stay_under_the_limit_and_are_as_few_as_the_limit_allows() -> None:
    points = many_points(40_000)
    out = batches(points)
    assert [p for b in out for p in b.points] == points
    for batch in out:
        payload = batch.payload()
        assert len(payload) <= batch.size < MAX_DECOMPRESSED_BYTES
        assert json.loads(payload)["series"] == [json.loads(p.encoded()) for p in batch.points]
    total = sum(len(p.encoded()) + 1 for p in points)
    assert len(out) <= total // 5_000_000 + 2  # close to the minimum the exact size would allow


def test_one_request_for_a_normal_cycle() -> None:
    t = Recorder()
    stats = sink(t).submit(many_points(2_000))
    assert (stats.requests, stats.points, len(t.payloads)) == (1, 2_000, 1)


def test_rate_limited_request_waits_for_the_reset_and_is_retried() -> None:
    throttled = SubmitError("429", status=429, retryable=True)
    throttled.retry_after = 7.0
    t, waits = Recorder([throttled]), []  # type: ignore[var-annotated]
    stats = sink(t, waits).submit(many_points(3))
    assert waits == [7.0] and stats.points == 3 and not stats.errors


def test_client_errors_are_not_retried_and_are_reported() -> None:
    t = Recorder([SubmitError("POST /api/v2/series -> 400: bad metric", status=400)])
    stats = sink(t).submit(many_points(3))
    assert t.attempts == 1 and stats.failed_points == 3 and stats.points == 0
    assert "bad metric" in str(stats.errors[0])


def test_exhausted_retries_report_failed_points_without_raising() -> None:
    t = Recorder([SubmitError("503", status=503, retryable=True) for _ in range(3)])
    stats = sink(t).submit(many_points(5))
    assert t.attempts == 3 and stats.failed_points == 5 and len(stats.errors) == 1


def test_413_splits_the_batch_until_it_fits() -> None:
    t = Recorder(max_points=300)
    stats = sink(t).submit(many_points(1_000))
    assert stats.points == 1_000 and not stats.errors
    assert sorted(p["tags"][0] for payload in t.payloads for p in payload) == sorted(
        f"service:svc-{i}" for i in range(1_000)
    )
    assert all(len(payload) <= 300 for payload in t.payloads)


@pytest.mark.parametrize("n", [10, 500])
def test_request_count_does_not_grow_with_services(n: int) -> None:
    figures = {ServiceRef("ns", f"svc-{i}"): Figures(1.0, 99.0, 100.0, 5.0) for i in range(n)}
    t = Recorder()
    sink(t).submit(points_for(by_figure(figures), {s: service_tags(s, ()) for s in figures}, at=1))
    assert t.attempts == 1


def test_an_outage_costs_one_batch_of_retries_and_returns_every_point_as_failed() -> None:
    t = Recorder([SubmitError("503", status=503, retryable=True) for _ in range(3)])
    points = many_points(40_000)  # two batches
    stats = sink(t).submit(points)
    assert t.attempts == 3  # the first batch's attempts only
    assert stats.failed == points and stats.points == 0


def test_413_halves_that_succeed_are_not_reported_as_failed() -> None:
    class HalfBroken(Recorder):
        def send_series(self, payload: bytes) -> None:
            series = json.loads(zlib.decompress(payload))["series"]
            if len(series) > 2:
                raise SubmitError("413", status=413)
            if series[0]["tags"][0] == "service:svc-2":
                raise SubmitError("400: bad point", status=400)
            super().send_series(payload)

    t = HalfBroken()
    stats = sink(t).submit(many_points(4))
    assert [p.tags[0] for p in stats.failed] == ["service:svc-2", "service:svc-3"]
    assert stats.points == 2 and len(stats.errors) == 1


def test_a_batch_over_the_compressed_limit_is_halved_before_any_request() -> None:
    """Full-precision values compress less than names and tags: 5 MB of JSON can deflate to more than
    Datadog's 512,000 bytes. Such a batch is split locally, never sent to be refused."""
    rng = random.Random(3)
    points = [
        Point("istio.service.p99_latency_ms", rng.random() * 1000, 1_700_000_000, (f"service:{rng.getrandbits(64):x}",))
        for _ in range(60_000)
    ]
    assert any(len(deflated(b.payload())) > MAX_COMPRESSED_BYTES for b in batches(points))  # the case arises
    t = Recorder()
    stats = sink(t).submit(points)
    assert stats.points == len(points) and not stats.failed and not stats.errors
    assert stats.requests == len(t.payloads) == t.attempts  # no request refused, none wasted
    assert sorted(json.dumps(s, sort_keys=True) for payload in t.payloads for s in payload) == sorted(
        json.dumps(json.loads(p.encoded()), sort_keys=True) for p in points
    )
    assert all(len(raw) <= MAX_COMPRESSED_BYTES for raw in t.raw)


def test_tags_follow_a_changed_label_of_the_same_service() -> None:
    before = ServiceRef("shop", "cart", labels=(("version", "1.0"),))
    after = ServiceRef("shop", "cart", labels=(("version", "2.0"),))
    assert before == after and hash(before) == hash(after)  # one Service: labels are no part of its identity
    assert "version:1.0" in service_tags(before, ())
    assert "version:2.0" in service_tags(after, ()) and "version:1.0" not in service_tags(after, ())


def test_an_event_reaches_datadog_as_ours_never_as_the_istio_integration() -> None:
    with FakeIntake(api_key="k") as intake:
        api = DatadogAPI(intake.url, api_key="k")
        try:
            DatadogSink(api).event(title="t", text="x", tags=["source:mesh-exporter"], date_happened=5)
        finally:
            api.close()
        (event,) = intake.events()
    assert event == {"title": "t", "text": "x", "tags": ["source:mesh-exporter"], "alert_type": "info",
                     "date_happened": 5}  # fmt: skip
    assert "source_type_name" not in event
