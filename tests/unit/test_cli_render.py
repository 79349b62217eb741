"""Rendering of `exporter once`: table layout, colour, JSON contract; time parsing."""

import argparse
import json
from dataclasses import replace

import pytest

from exporter.cli.common import parse_time
from exporter.cli.once import render_json, render_table
from exporter.export.cycle import CycleResult
from exporter.model import CATALOGUE, Figures, ServiceRef

FIGS = {
    ServiceRef("shop", "cart"): Figures(1234.5, 97.0, 100.0, 41.0),
    ServiceRef("legacy", "cart"): Figures(2.0, 100.0, 0.0, None),
    ServiceRef("shop", "api"): Figures(),
}


def test_table_is_sorted_aligned_and_shows_no_data_as_a_dash() -> None:
    lines = render_table(FIGS, colour=False).splitlines()
    assert lines[0].split() == ["NAMESPACE", "SERVICE", "REQ/S", "SUCCESS", "%", "MTLS", "%", "P99", "MS"]
    assert [line.split()[:2] for line in lines[1:]] == [["legacy", "cart"], ["shop", "api"], ["shop", "cart"]]
    assert lines[3].split()[2:] == ["1,234.50", "97.00", "100.0", "41.0"]
    assert lines[2].split()[2:] == ["—"] * 4
    # numbers are right-aligned: every row's REQ/S column ends at the same offset
    ends = {line.index(line.split()[2]) + len(line.split()[2]) for line in lines[1:]}
    assert len(ends) == 1
    assert "\033[" not in "\n".join(lines)


def test_colour_highlights_failing_figures_only_when_asked() -> None:
    text = render_table(FIGS, colour=True)
    red = "\033[31m"
    assert f"{red}{'97.00':>9}\033[0m" in text  # the SUCCESS % column is 9 wide
    assert f"{red}{'0.0':>6}\033[0m" in text  # the MTLS % column is 6 wide
    assert text.count(red) == 2  # cart's 97 % success and legacy's 0 % mTLS


def test_the_table_and_json_follow_the_figure_catalogue() -> None:
    p99 = replace(CATALOGUE["p99_latency_ms"], column="LATENCY", decimals=3)
    catalogue = {"p99_latency_ms": p99, "success_rate_pct": CATALOGUE["success_rate_pct"]}
    lines = render_table(FIGS, colour=False, catalogue=catalogue).splitlines()
    assert lines[0].split() == ["NAMESPACE", "SERVICE", "LATENCY", "SUCCESS", "%"]
    assert lines[3].split()[2:] == ["41.000", "97.00"]
    assert f"\033[31m{'97.00':>9}\033[0m" in render_table(FIGS, colour=True, catalogue=catalogue)  # still marked
    doc = json.loads(render_json(CycleResult(at=1, figures_of=lambda: FIGS), catalogue=catalogue))
    assert doc["services"][2] == {
        "namespace": "shop",
        "service": "cart",
        "p99_latency_ms": 41.0,
        "success_rate_pct": 97.0,
    }


def test_json_follows_the_contract_with_null_for_no_data() -> None:
    doc = json.loads(render_json(CycleResult(at=1700000000, figures_of=lambda: FIGS)))
    assert doc["evaluated_at"] == 1700000000 and doc["errors"] == []
    assert doc["services"][1] == {
        "namespace": "shop", "service": "api", "request_rate": None,
        "success_rate_pct": None, "mtls_coverage_pct": None, "p99_latency_ms": None,
    }  # fmt: skip
    assert [(s["namespace"], s["service"]) for s in doc["services"]] == [
        ("legacy", "cart"),
        ("shop", "api"),
        ("shop", "cart"),
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1700000000", 1700000000),
        ("1700000000.9", 1700000000),
        ("2023-11-14T22:13:20Z", 1700000000),
        ("2023-11-14T23:13:20+01:00", 1700000000),
    ],
)
def test_parse_time(text: str, expected: int) -> None:
    assert parse_time(text) == expected


def test_parse_time_needs_an_offset() -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        parse_time("2023-11-14T22:13:20")
