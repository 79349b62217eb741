"""PromQL text: quoting, matchers, durations and the grouped figure queries."""

from dataclasses import replace

import pytest

from exporter import durations
from exporter.model import CATALOGUE
from exporter.query import promql


def test_quote_escapes_quotes_backslashes_and_newlines() -> None:
    assert promql.quote('a"b\\c\nd') == '"a\\"b\\\\c\\nd"'
    assert promql.quote("plain-name") == '"plain-name"'


def test_regex_literal_escapes_every_metacharacter() -> None:
    assert promql.regex_literal("a.b|c(d)*") == r"a\.b\|c\(d\)\*"


def test_one_of_is_sorted_and_escaped() -> None:
    m = promql.one_of("destination_service_namespace", ["shop", "a.b"])
    assert str(m) == 'destination_service_namespace=~"a\\\\.b|shop"'


@pytest.mark.parametrize(
    ("text", "seconds"), [("30s", 30), ("5m", 300), ("1h30m", 5400), ("7d", 604800), ("500ms", 0.5)]
)
def test_duration_seconds(text: str, seconds: float) -> None:
    assert durations.seconds(text) == seconds


@pytest.mark.parametrize("text", ["5", "5 m", "m5", "", "5min", "-5m"])
def test_duration_rejects_non_durations(text: str) -> None:
    with pytest.raises(ValueError, match="not a PromQL duration"):
        durations.seconds(text)


def test_matcher_rejects_bad_label_names_and_operators() -> None:
    with pytest.raises(ValueError):
        promql.Matcher("bad-label", "x")
    with pytest.raises(ValueError):
        promql.Matcher("ok", "x", "==")


def test_figure_queries_are_grouped_destination_reported_and_never_per_service() -> None:
    queries = promql.figure_queries(window="5m")
    assert list(queries) == ["requests", "ok", "mtls", "p99"]
    by = "sum by (destination_service_namespace, destination_service_name)"
    assert queries["requests"] == f'{by} (rate(istio_requests_total{{reporter="destination"}}[5m]))'
    assert queries["ok"] == f'{by} (rate(istio_requests_total{{reporter="destination",response_code!~"5.."}}[5m]))'
    assert queries["mtls"] == (
        f'{by} (rate(istio_requests_total{{reporter="destination",connection_security_policy="mutual_tls"}}[5m]))'
    )
    assert queries["p99"] == (
        "histogram_quantile(0.99, sum by (destination_service_namespace, destination_service_name, le) "
        '(rate(istio_request_duration_milliseconds_bucket{reporter="destination"}[5m])))'
    )
    for text in queries.values():
        assert "destination_service_name=" not in text  # no per-service selection


def test_figure_queries_with_offset_matchers_and_other_grouping() -> None:
    queries = promql.figure_queries(
        ("destination_version",),
        window="10m",
        matchers=[promql.Matcher("destination_service_name", 'we"ird')],
        offset="7d",
        q=0.5,
    )
    assert queries["requests"] == (
        "sum by (destination_version) (rate(istio_requests_total"
        '{reporter="destination",destination_service_name="we\\"ird"}[10m] offset 7d))'
    )
    assert queries["p99"].startswith("histogram_quantile(0.5, sum by (destination_version, le) (")


def test_invalid_window_or_quantile_is_refused() -> None:
    with pytest.raises(ValueError):
        promql.figure_queries(window="five minutes")
    with pytest.raises(ValueError):
        promql.quantile(1.5, promql.SERVICE_LABELS, window="5m")


def test_the_query_set_follows_the_figure_catalogue() -> None:
    without_p99 = {name: info for name, info in CATALOGUE.items() if name != "p99_latency_ms"}
    assert list(promql.figure_queries(window="5m", catalogue=without_p99)) == ["requests", "ok", "mtls"]
    only_p99 = {"p99_latency_ms": CATALOGUE["p99_latency_ms"]}
    assert list(promql.figure_queries(window="5m", catalogue=only_p99)) == ["requests", "p99"]
    # a figure that reads a query another figure reads costs no further query
    again = {**CATALOGUE, "mtls_again": replace(CATALOGUE["mtls_coverage_pct"], suffix="mtls_again")}
    assert promql.figure_queries(window="5m", catalogue=again) == promql.figure_queries(window="5m")
    # every figure reads a query that exists
    assert {info.query for info in CATALOGUE.values()} <= set(promql.FIGURE_QUERIES)


def test_unseen_query_asks_the_callers_side_for_exactly_the_named_flows_unless_the_destination_saw_them() -> None:
    by = ("destination_service_namespace", "destination_service_name", "source_workload", "source_workload_namespace")
    flows = [("shop", "app", "gw", "leg"), ("shop", 'a"b', "cron.1", "leg")]
    text = promql.unseen_query(flows, by, window="1h", matchers=(promql.Matcher("cluster", "c1"),))
    picked = (
        'cluster="c1",destination_service_namespace=~"shop",destination_service_name=~"a\\"b|app",'
        'source_workload=~"cron\\\\.1|gw",source_workload_namespace=~"leg"'
    )
    group = ", ".join(by)
    assert text == (
        f'sum by ({group}) (rate(istio_requests_total{{reporter="source",{picked}}}[1h])) unless on ({group}) '
        f'(sum by ({group}) (rate(istio_requests_total{{reporter="destination",{picked}}}[1h])) > 0)'
    )
