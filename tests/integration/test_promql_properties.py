"""Property tests, judged by a real Prometheus: whatever text a setting or a Kubernetes label holds,
the PromQL builders pass it as a literal, never as PromQL (no injection, no broken quoting)."""

from __future__ import annotations

import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporter.query.promql import quote, regex_literal
from tests.support.prom import DemoProm

# Prometheus label values are UTF-8 strings: any text without lone surrogates (NUL included).
TEXT = st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=40)
NASTY = st.sampled_from(
    ['"}) or vector(42) #', "a\\", '\\"', "\n", "x|y", ".*", "a{1}", "`", "'", "\x00", "é😀", "$0", "${1}x"]
)


def labelled(value: str) -> str:
    """vector(1) with label x set to `value`. label_replace expands $-references in its replacement
    argument, so a literal $ is written $$ there; the quoting under test is still `quote`'s."""
    return f'label_replace(vector(1), "x", {quote(value.replace("$", "$$"))}, "", "")'


def evaluate(url: str, expr: str) -> list[dict[str, str]]:
    r = requests.get(f"{url}/api/v1/query", params={"query": expr, "time": "1700000000"}, timeout=10)
    body = r.json()
    assert r.status_code == 200, body
    return [sample["metric"] for sample in body["data"]["result"]]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=st.one_of(TEXT, NASTY))
def test_a_quoted_string_is_exactly_its_value(demo_prom: DemoProm, value: str) -> None:
    labels = evaluate(demo_prom.url, labelled(value))
    assert labels == [{"x": value}]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=st.one_of(TEXT, NASTY), other=TEXT)
def test_an_escaped_regex_matches_exactly_its_value(demo_prom: DemoProm, value: str, other: str) -> None:
    def matches(candidate: str) -> bool:
        expr = f'label_replace({labelled(candidate)}, "hit", "yes", "x", {quote(regex_literal(value))})'
        return evaluate(demo_prom.url, expr)[0].get("hit") == "yes"

    assert matches(value)
    assert matches(other) == (other == value)
