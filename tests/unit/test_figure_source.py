"""EXPORTER_FIGURE_SOURCE: which queries each mode sends, and when `auto` falls back (a fake client that
answers by query text, so the decision is seen without a Prometheus)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import replace
from typing import Any, cast

from structlog.testing import capture_logs

from exporter.errors import QueryError
from exporter.model import CATALOGUE
from exporter.query import figures, promql
from exporter.query.prometheus import PrometheusClient

NS = {"destination_service_namespace": "shop", "destination_service_name": "cart"}


class Answers:
    """query_each as PrometheusClient has it (every query sent before the first answer is read): recorded
    series present or absent, or their queries failing."""

    def __init__(self, recorded: str) -> None:
        self.recorded = recorded  # "present", "absent" or "failing"
        self.sent: list[str] = []

    def query_each(self, queries: Mapping[str, str], *, at: float) -> Iterator[tuple[str, Any]]:
        out: dict[str, Any] = {}
        for name, text in queries.items():
            self.sent.append(text)
            if ":rate7m" not in text:  # a raw query (recorded names carry the window)
                out[name] = [(NS, 2.0)]
            elif self.recorded == "failing":
                out[name] = QueryError("Prometheus answered 503", query=text, status=503)
            else:
                out[name] = [(NS, 2.0)] if self.recorded == "present" else []
        return iter(out.items())


def run(recorded: str, source: figures.Source) -> tuple[figures.Measurement, Answers]:
    fake = Answers(recorded)
    m = figures.measure_services(cast(PrometheusClient, fake), at=1.0, window="7m", source=source)
    return m, fake


def test_raw_sends_only_raw_queries_and_recorded_only_recorded_ones() -> None:
    m, fake = run("present", "raw")
    assert m.source == "raw" and fake.sent == list(promql.figure_queries(window="7m").values())
    m, fake = run("absent", "recorded")
    assert m.source == "recorded" and fake.sent == list(promql.recorded_figure_queries(window="7m").values())
    assert m.figures == {}  # recorded mode never falls back: no recorded series, no figures


def test_every_mode_measures_the_figures_of_the_catalogue_it_is_given() -> None:
    again = {**CATALOGUE, "mtls_again": replace(CATALOGUE["mtls_coverage_pct"], suffix="mtls_again")}
    without_p99 = {name: info for name, info in CATALOGUE.items() if name != "p99_latency_ms"}
    for source in ("raw", "recorded"):
        fake = Answers("present")
        m = figures.measure_services(cast(PrometheusClient, fake), at=1.0, window="7m", source=source, catalogue=again)
        assert set(m.values) == set(again) and m.values["mtls_again"] == {("shop", "cart"): 100.0}
        fake = Answers("present")
        client = cast(PrometheusClient, fake)
        m = figures.measure_services(client, at=1.0, window="7m", source=source, catalogue=without_p99)
        assert set(m.values) == set(without_p99) and len(fake.sent) == 3
        assert not any("bucket" in text for text in fake.sent)


def test_auto_falls_back_only_when_the_recorded_request_rates_are_absent() -> None:
    with capture_logs() as logs:
        present, sent_present = run("present", "auto")
        absent, sent_absent = run("absent", "auto")
        failing, sent_failing = run("failing", "auto")
        absent_again, _ = run("absent", "auto")
    assert present.source == "recorded" and len(sent_present.sent) == 4
    assert absent.source == "raw" and len(sent_absent.sent) == 8 and absent.figures
    # a failed recorded query is that cycle's error, not a reason to double the load with raw queries
    assert failing.source == "recorded" and set(failing.errors) == {"requests", "ok", "mtls", "p99"}
    assert len(sent_failing.sent) == 4 and failing.figures == {}
    assert absent_again.source == "raw"
    switches = [(e["source"], e["previous"]) for e in logs if e["event"] == "figure source" and e["window"] == "7m"]
    assert switches == [("recorded", None), ("raw", "recorded"), ("recorded", "raw"), ("raw", "recorded")]
