"""Rendering of the mTLS report (Markdown, JSON, HTML, the Datadog event) from a report built by hand.

The report comes from exporter.mtls.report.build_report over hand-made vectors, so the expected figures are
plain arithmetic on the numbers below.
"""

import html
import json
import re

import pytest

from exporter.model import ServiceRef
from exporter.mtls.build import Traffic, build_report
from exporter.mtls.model import Report, Verdict
from exporter.mtls.policy import Mode, Policy, resolve
from exporter.mtls.render import bar_chart, html_page, markdown, pct_text, summary, to_json

AT = 1_795_000_000
HOSTILE_NS = "evil"
HOSTILE_WORKLOAD = '<script>alert("x")</script>|`*'


def make_report(extra_callers: int = 0) -> Report:
    current = Traffic(
        requests={("shop", "cart"): 3.0, ("shop", "api"): 1.0, (HOSTILE_NS, "svc"): 2.0, ("idle", "old"): 0.0},
        plaintext={
            ("shop", "cart", "batch", "jobs"): 0.0,  # a series that stopped: no plaintext this window
            (HOSTILE_NS, "svc", HOSTILE_WORKLOAD, "x"): 0.5,
            (HOSTILE_NS, "svc", "unknown", "unknown"): 0.5,
            **{(HOSTILE_NS, "svc", f"w{i:04d}", "many"): 0.001 for i in range(extra_callers)},
        },
    )
    previous = Traffic(requests={("shop", "cart"): 4.0}, plaintext={("shop", "cart", "batch", "jobs"): 1.0})
    policies = [Policy("shop", "default", mode=Mode.PERMISSIVE), Policy(HOSTILE_NS, "default", mode=Mode.STRICT)]
    return build_report(
        current,
        previous,
        services=[ServiceRef("shop", "cart"), ServiceRef("shop", "api"), ServiceRef("shop", "ghost")],
        policies=resolve(policies, root_namespace="istio-system"),
        at=AT,
        window="1h",
    )


def test_the_hand_made_report_has_the_expected_figures_and_verdicts() -> None:
    report = make_report()
    assert report.mesh.current is not None and report.mesh.current.pct == pytest.approx(100 * 5 / 6)
    assert report.mesh.previous is not None and report.mesh.previous.pct == pytest.approx(75.0)
    verdicts = {n.namespace: n.verdict for n in report.namespaces}
    assert verdicts == {"shop": Verdict.READY, HOSTILE_NS: Verdict.STRICT_PLAINTEXT, "idle": Verdict.NO_TRAFFIC}
    assert [n.namespace for n in report.namespaces] == [HOSTILE_NS, "shop", "idle"]  # 50 %, 100 %, no traffic
    assert [str(s.service) for s in report.services] == ["shop/cart", "shop/api", "shop/ghost"]  # volume breaks ties
    assert [c.name for c in report.resolved] == ["jobs/batch"]


@pytest.mark.parametrize(
    ("value", "text"),
    [(None, "—"), (100.0, "100.00 %"), (99.999, "99.99 %"), (99.994, "99.99 %"), (33.3333, "33.33 %"), (0.0, "0.00 %")],
)
def test_percentages_never_show_100_unless_they_are(value: float | None, text: str) -> None:
    assert pct_text(value) == text


def test_html_is_self_contained_and_escapes_every_name() -> None:
    page = html_page(make_report())
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert "<script" not in page and not re.search(r"(src|href)=\"(?!#)", page)
    assert "http://" not in page and "https://" not in page and "@import" not in page
    assert html.escape(HOSTILE_WORKLOAD, quote=True) in page
    assert page.count('<section class="ns"') == 3
    assert "<strong>outside the mesh</strong>" in page


def test_bar_lengths_are_proportional_to_coverage() -> None:
    report = make_report()
    chart = bar_chart("t", [(n.namespace, n.coverage) for n in report.namespaces])
    widths = [float(w) for w in re.findall(r'<rect class="fill \w+" x="\d+" y="\d+" width="([\d.]+)"', chart)]
    assert widths == [180.0, 360.0]  # 50 % and 100 % of the 360-pixel track; no bar for no traffic
    assert re.findall(r'<rect class="fill (\w+)"', chart) == ["warn", "good"]
    assert 'class="prev"' in chart  # shop had traffic in the previous window: its tick is drawn


def test_markdown_escapes_table_cells_and_names_outside_callers() -> None:
    text = markdown(make_report())
    assert r"\<script>" not in text  # Markdown does not need < escaped, but | ` and * would break the table
    assert r'<script>alert("x")</script>\|\`\*' in text
    assert "| evil/svc | **outside the mesh** (`unknown`) | 0.50 | 1,800 | — |" in text
    assert "| shop/ghost | — | — | — | — | — |" in text
    assert "1 ready for STRICT · 1 STRICT but plaintext observed · 1 no traffic" in text


def test_json_contract() -> None:
    doc = json.loads(to_json(make_report()))
    assert doc["evaluated_at"] == AT and doc["window"] == "1h" and doc["window_seconds"] == 3600
    assert doc["mesh"]["policy"] == {"mode": "PERMISSIVE", "source": "mesh default"}
    shop = next(n for n in doc["namespaces"] if n["namespace"] == "shop")
    assert shop["verdict"] == "ready" and shop["verdict_text"] == "ready for STRICT"
    assert shop["coverage_pct"] == 100.0 and shop["requests"] == pytest.approx(4.0 * 3600)
    assert shop["previous"]["coverage_pct"] == pytest.approx(75.0) and shop["change_pct_points"] == pytest.approx(25.0)
    idle = next(n for n in doc["namespaces"] if n["namespace"] == "idle")
    assert idle["coverage_pct"] is None and idle["previous"] is None and idle["verdict"] == "no_traffic"
    outside = [o for o in doc["offenders"] if o["outside_mesh"]]
    assert outside == [
        {
            "destination": {"namespace": HOSTILE_NS, "service": "svc"},
            "source_workload": "unknown",
            "source_workload_namespace": "unknown",
            "outside_mesh": True,
            "request_rate": 0.5,
            "previous_request_rate": None,
        }
    ]


def test_event_summary_stays_within_datadogs_limit() -> None:
    title, text = summary(make_report(extra_callers=500))
    assert len(text) <= 4000 and text.startswith("%%%") and text.endswith("%%%")
    assert "more lines in the full report" in text
    assert title.startswith("mTLS coverage ") and "1 ready for STRICT" in title
    title, text = summary(make_report())
    assert "more lines" not in text and "evil/svc ← **outside the mesh**" in text
