"""Figures from the four vectors: the PromQL ratio traps, table-driven."""

from dataclasses import fields, replace

import pytest

from exporter.model import CATALOGUE, Figures
from exporter.query.figures import figure_values, figures_from

K = ("shop", "cart")


@pytest.mark.parametrize(
    ("vectors", "expected"),
    [
        # every figure present
        (
            {"requests": {K: 10.0}, "ok": {K: 9.5}, "mtls": {K: 2.5}, "p99": {K: 120.0}},
            Figures(10.0, 95.0, 25.0, 120.0),
        ),
        # no mutual_tls series at all: 0 % coverage, not a missing figure
        ({"requests": {K: 4.0}, "ok": {K: 4.0}, "mtls": {}, "p99": {K: 8.0}}, Figures(4.0, 100.0, 0.0, 8.0)),
        # every request failed: no non-5xx series, success is 0 %
        ({"requests": {K: 2.0}, "ok": {}, "mtls": {K: 2.0}, "p99": {K: 30.0}}, Figures(2.0, 0.0, 100.0, 30.0)),
        # the p99 query failed: the other figures stand
        ({"requests": {K: 2.0}, "ok": {K: 1.0}, "mtls": {K: 2.0}, "p99": None}, Figures(2.0, 50.0, 100.0, None)),
        # the ok query failed: no success rate rather than a made-up one
        ({"requests": {K: 2.0}, "ok": None, "mtls": {K: 1.0}, "p99": {K: 3.0}}, Figures(2.0, None, 50.0, 3.0)),
        # the total query failed: only the p99 (which alone proves traffic) is known
        ({"requests": None, "ok": {K: 1.0}, "mtls": {K: 1.0}, "p99": {K: 3.0}}, Figures(None, None, None, 3.0)),
    ],
)
def test_figures_from(vectors: dict, expected: Figures) -> None:  # type: ignore[type-arg]
    assert figures_from(vectors) == {K: expected}


def test_no_traffic_means_no_figures_at_all() -> None:
    # series exist, rate is 0 (Prometheus gives NaN ratios and a NaN quantile, dropped before this)
    assert figures_from({"requests": {K: 0.0}, "ok": {K: 0.0}, "mtls": {K: 0.0}, "p99": {}}) == {}


def test_rounding_never_pushes_a_percentage_over_100() -> None:
    total = 0.1 + 0.2  # 0.30000000000000004
    out = figures_from({"requests": {K: 0.3}, "ok": {K: total}, "mtls": {K: total}, "p99": {}})
    assert out[K].success_rate_pct == 100.0
    assert out[K].mtls_coverage_pct == 100.0


def test_same_name_in_two_namespaces_stays_apart() -> None:
    a, b = ("shop", "api"), ("legacy", "api")
    out = figures_from({"requests": {a: 1.0, b: 3.0}, "ok": {a: 1.0, b: 1.5}, "mtls": {a: 1.0}, "p99": {}})
    assert out[a] == Figures(1.0, 100.0, 100.0, None)
    assert out[b] == Figures(3.0, 50.0, 0.0, None)


def test_figures_has_one_field_per_catalogue_entry_in_its_order() -> None:
    assert [f.name for f in fields(Figures)] == list(CATALOGUE)


def test_figure_values_follow_the_catalogue() -> None:
    vectors = {"requests": {K: 4.0}, "ok": {K: 3.0}, "mtls": {K: 1.0}, "p99": {K: 8.0}}
    again = {**CATALOGUE, "mtls_again": replace(CATALOGUE["mtls_coverage_pct"], suffix="mtls_again")}
    assert figure_values("mtls_again", vectors, again) == {K: 25.0}
    # a figure in the catalogue that Figures has no field for fails loudly instead of going missing
    with pytest.raises(TypeError, match="mtls_again"):
        figures_from(vectors, again)
    # a figure left out of the catalogue is not computed
    assert figures_from(vectors, {"p99_latency_ms": CATALOGUE["p99_latency_ms"]}) == {K: Figures(p99_latency_ms=8.0)}
