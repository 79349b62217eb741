"""Rendering of the mTLS report (Markdown, JSON, HTML, the Datadog event) from a report built by hand.

The report comes from exporter.mtls.report.build_report over hand-made vectors, so the expected figures are
plain arithmetic on the numbers below.
"""

import html
import json
import re

import pytest

from exporter.model import ServiceRef
from exporter.mtls import gate
from exporter.mtls.build import Traffic, build_report, stopped_in_mesh
from exporter.mtls.model import Report, Verdict
from exporter.mtls.policy import Mode, Policy, resolve
from exporter.mtls.publish import date_happened
from exporter.mtls.render import change_text, html_page, markdown, pct_text, rate_text, summary, to_json

AT = 1_795_000_000
HOSTILE_NS = "evil"
HOSTILE_WORKLOAD = '<script>alert("x")</script>|`*'


def make_report(extra_callers: int = 0) -> Report:
    current = Traffic(
        requests={("shop", "cart"): 3.0, ("shop", "api"): 1.0, (HOSTILE_NS, "svc"): 2.0, ("idle", "old"): 0.0},
        plaintext={
            ("shop", "cart", "cart", "batch", "jobs"): 0.0,  # a series that stopped: no plaintext this window
            (HOSTILE_NS, "svc", "svc", HOSTILE_WORKLOAD, "x"): 0.5,
            (HOSTILE_NS, "svc", "svc", "unknown", "unknown"): 0.5,
            **{(HOSTILE_NS, "svc", "svc", f"w{i:04d}", "many"): 0.001 for i in range(extra_callers)},
        },
    )
    previous = Traffic(requests={("shop", "cart"): 4.0}, plaintext={("shop", "cart", "cart", "batch", "jobs"): 1.0})
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
    [
        (None, "no traffic"),
        (100.0, "100.00 %"),
        (99.999, "99.99 %"),
        (99.994, "99.99 %"),
        (33.3333, "33.33 %"),
        (0.0, "0.00 %"),
    ],
)
def test_percentages_never_show_100_unless_they_are(value: float | None, text: str) -> None:
    assert pct_text(value) == text


def test_html_is_self_contained_and_escapes_every_name() -> None:
    page = html_page(make_report())
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert "<script" not in page and not re.search(r"(src|href)=\"(?!#)", page)
    assert "http://" not in page and "https://" not in page and "@import" not in page
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;|`*" in page  # Jinja2's autoescape
    assert html.unescape("&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;|`*") == HOSTILE_WORKLOAD
    assert page.count('<section class="ns"') == 3
    assert "<strong>outside the mesh</strong>" in page


def test_bar_lengths_are_proportional_to_coverage() -> None:
    page = html_page(make_report())
    chart = page[page.index("<svg") : page.index("</svg>")]  # the overview: one bar per namespace
    widths = [float(w) for w in re.findall(r'<rect class="fill \w+" x="\d+" y="\d+" width="([\d.]+)"', chart)]
    assert widths == [180.0, 360.0]  # 50 % and 100 % of the 360-pixel track; no bar for no traffic
    assert re.findall(r'<rect class="fill (\w+)"', chart) == ["warn", "good"]
    assert 'class="prev"' in chart  # shop had traffic in the previous window: its tick is drawn


def test_markdown_escapes_table_cells_and_names_outside_callers() -> None:
    text = markdown(make_report())
    assert r"\<script>" not in text  # Markdown does not need < escaped, but | ` and * would break the table
    assert r'<script>alert("x")</script>\|\`\*' in text
    why = "no policy allows it (STRICT from evil/default)"
    assert f"| evil/svc | **outside the mesh** (`unknown`) | 0.50 | 1,800 | 0 | {why} |" in text
    assert "| shop | ghost | no traffic | 0 | 0 | no traffic | n/a |" in text
    assert "—" not in text and "e-0" not in text  # no placeholder punctuation, no scientific notation
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
            "destination_app": "svc",
            "allowed_by": {
                "evidence": "none",
                "policy": "evil/default",
                "exception": False,
                "text": "no policy allows it (STRICT from evil/default)",
            },
        }
    ]


def test_event_summary_stays_within_datadogs_limit() -> None:
    title, text = summary(make_report(extra_callers=500))
    assert len(text) <= 4000 and text.startswith("%%%") and text.endswith("%%%")
    assert "more lines in the full report" in text
    assert title.startswith("mTLS coverage ") and "1 ready for STRICT" in title
    assert title.endswith("1 ready for STRICT, 1 STRICT but plaintext observed, 1 no traffic")  # every class
    title, text = summary(make_report())
    assert "more lines" not in text and "evil/svc ← **outside the mesh**" in text
    assert text.splitlines()[-2].startswith("Policies are read as they are now, when the report runs")


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, "0"),
        (0.0, "0"),
        (2e-05, "0.00002"),
        (0.0123456, "0.0123"),
        (0.05, "0.05"),
        (0.1, "0.10"),
        (1.234, "1.23"),
        (12345.678, "12,345.68"),
        (1.5e-9, "0.0000000015"),
    ],
)
def test_rates_have_significant_digits_and_never_scientific_notation(value: float | None, text: str) -> None:
    assert rate_text(value) == text


def blind_report(swap: bool = False) -> Report:
    """legacy: a migrated Service `gw` and an unmigrated `bridge`; `old` lost its sidecar this window.
    Coverage of legacy: 50 % in the previous window, 75 % now (`swap`: the other way round)."""
    current = Traffic(
        requests={("legacy", "gw"): 3.0, ("legacy", "bridge"): 1.0},
        plaintext={("legacy", "bridge", "bridge", "unknown", "unknown"): 1.0},
        unverified={("legacy", "old", "app", "shop"): 1.9, ("legacy", "old", "quiet", "shop"): 0.0},
    )
    previous = Traffic(
        requests={("legacy", "gw"): 2.0, ("legacy", "old"): 2.0},
        plaintext={("legacy", "old", "old", "app", "shop"): 1.5, ("legacy", "old", "old", "gone", "shop"): 0.5},
    )
    if swap:
        current, previous = previous, current
    return build_report(
        current,
        previous,
        services=[ServiceRef("legacy", "gw"), ServiceRef("legacy", "old")],
        policies=resolve([], root_namespace="istio-system"),
        at=AT,
        window="1h",
    )


def test_rows_add_up_to_the_namespace_and_the_namespaces_to_the_mesh() -> None:
    report = blind_report()
    (legacy,) = report.namespaces
    assert legacy.others is not None and legacy.others.names == ("bridge",)
    rows = [s.coverage.current for s in report.services] + [legacy.others.coverage.current]
    assert sum(r.rate for r in rows if r) == pytest.approx(legacy.coverage.current.rate) == 4.0  # type: ignore[union-attr]
    assert sum(r.plaintext_rate for r in rows if r) == pytest.approx(1.0)
    assert report.mesh.current is not None and report.mesh.current.rate == pytest.approx(4.0)
    text = markdown(report)
    assert "| legacy | other destinations, not migrated Services: bridge | 0.00 % | 3,600 | 1.00 |" in text


def test_a_destination_without_sidecar_is_named_and_its_callers_are_not_stopped() -> None:
    report = blind_report()
    assert [(str(c.destination), c.name, c.rate, c.previous_plaintext) for c in report.unverified] == [
        ("legacy/old", "shop/app", 1.9, 1.5)
    ]
    # shop/app still sends to legacy/old according to its own proxy: not "stopped"; shop/gone really stopped
    assert [c.name for c in report.resolved] == ["shop/gone"]
    old = next(s for s in report.services if s.service.name == "old")
    assert old.coverage.current is None and old.unverified_rate == pytest.approx(1.9)
    (legacy,) = report.namespaces
    assert legacy.verdict is Verdict.BLOCKED and [c.name for c in legacy.unverified] == ["shop/app"]
    for text in (markdown(report), html_page(report), summary(report)[1]):
        assert "destination without sidecar: traffic unverified" in text
    page = html_page(report)
    assert '<h2 id="unverified">' in page and '<td data-label="Destination">legacy/old</td>' in page
    doc = json.loads(to_json(report))
    assert doc["namespaces"][0]["destination_without_sidecar"] is True
    assert doc["unverified"][0]["request_rate"] == 1.9


def test_a_namespace_with_only_unverified_traffic_gets_its_own_verdict() -> None:
    current = Traffic(requests={}, plaintext={}, unverified={("edge", "proxy", "app", "shop"): 0.5})
    report = build_report(
        current,
        Traffic({}, {}),
        services=[],
        policies=resolve([], root_namespace="istio-system"),
        at=AT,
        window="1h",
    )
    assert [(n.namespace, n.verdict) for n in report.namespaces] == [("edge", Verdict.UNVERIFIED)]
    assert "1 destination without sidecar: traffic unverified" in summary(report)[0]


def test_the_gate_holds_exactly_when_its_condition_does() -> None:
    report = make_report()  # evil: STRICT with unexcepted plaintext; shop +25 pts; no blind destination
    assert gate.failures(report, gate.parse("strict-plaintext"))[0].startswith("strict-plaintext: ")
    assert gate.failures(report, gate.parse("coverage-drop")) == []
    assert gate.failures(report, gate.parse("unverified")) == []
    dropped = blind_report(swap=True)  # legacy (the whole mesh) 75 % → 50 %: -25 pts
    assert gate.failures(dropped, gate.parse("coverage-drop:24.9")) == [
        "coverage-drop:24.9: mesh -25.00 pts, legacy -25.00 pts"
    ]
    assert gate.failures(dropped, gate.parse("coverage-drop:25")) == []
    blind = blind_report()
    assert gate.failures(blind, gate.parse("coverage-drop")) == []  # +25 pts
    assert gate.failures(blind, gate.parse("unverified,strict-plaintext")) == [
        "unverified: destinations without sidecar: legacy/old"
    ]
    for bad in ("strict", "coverage-drop:x", "coverage-drop:-1", "unverified:3"):
        with pytest.raises(ValueError):
            gate.parse(bad)


def test_event_is_dated_at_the_window_end_only_when_datadog_accepts_it() -> None:
    report = make_report()
    assert date_happened(report, now=AT + 3600) == AT
    assert date_happened(report, now=AT + 17 * 3600) == AT
    assert date_happened(report, now=AT + 19 * 3600) is None
    assert date_happened(report, now=AT - 60) is None  # a window ending in the future: posting time
    _, text = summary(report, dated=False)
    assert "Report for the window 1h from 2026-11-18T10:06:40Z to 2026-11-18T11:06:40Z" in text


def _strict_catalog(plaintext: dict[tuple[str, ...], float]) -> Report:
    """cat: STRICT; the Service `search` fronts two apps, and only app=search-legacy is excepted."""
    policies = [
        Policy("cat", "default", mode=Mode.STRICT),
        Policy("cat", "legacy", selector={"app": "search-legacy"}, mode=Mode.PERMISSIVE),
    ]
    return build_report(
        Traffic({("cat", "search"): 10.0}, plaintext),
        Traffic({}, {}),
        services=[ServiceRef("cat", "search")],
        policies=resolve(policies, root_namespace="istio-system"),
        at=AT,
        window="1h",
    )


@pytest.mark.parametrize("order", [("search-legacy", "search-v2"), ("search-v2", "search-legacy")])
def test_flows_to_one_service_are_judged_per_app_whatever_the_order(order: tuple[str, str]) -> None:
    report = _strict_catalog({("cat", "search", app, "web", "fe"): 1.0 for app in order})
    got = {(c.app, c.rate, c.allowance.evidence.name if c.allowance else None) for c in report.offenders}
    assert got == {("search-legacy", 1.0, "ALLOWED"), ("search-v2", 1.0, "NONE")}
    assert report.namespaces[0].verdict is Verdict.STRICT_PLAINTEXT  # search-v2's plaintext is excepted by nothing
    assert "| cat/search (app=search-v2) | fe/web | 1.00 |" in markdown(report)
    assert '<td data-label="Destination">cat/search (app=search-v2)</td>' in html_page(report)
    assert "- cat/search (app=search-v2) ← fe/web: 1.00 req/s" in summary(report)[1]


def test_a_stopped_caller_is_stopped_only_when_a_proxy_can_see_it() -> None:
    """gw reports nothing now: shop/app's proxy still sends to it (unverified), shop/gone's sends nothing
    (stopped), and the outside caller has no proxy (cannot tell). api still reports: its outside caller stopped."""
    current = Traffic({("leg", "api"): 1.0}, {}, unverified={("leg", "gw", "app", "shop"): 1.0})
    previous = Traffic(
        {("leg", "gw"): 4.0, ("leg", "api"): 1.0},
        {
            ("leg", "gw", "gw", "unknown", "unknown"): 1.0,
            ("leg", "gw", "gw", "app", "shop"): 1.0,
            ("leg", "gw", "gw", "gone", "shop"): 0.5,
            ("leg", "api", "api", "unknown", "unknown"): 0.25,
        },
    )
    report = build_report(
        current, previous, services=[], policies=resolve([], root_namespace="istio-system"), at=AT, window="1h"
    )
    assert [(str(c.destination), c.name) for c in report.resolved] == [
        ("leg/api", "outside the mesh (unknown)"),
        ("leg/gw", "shop/gone"),
    ]
    assert [(str(c.destination), c.name, c.previous_rate) for c in report.undetermined] == [
        ("leg/gw", "outside the mesh (unknown)", 1.0)
    ]
    assert [c.name for c in report.unverified] == ["shop/app"]
    text = markdown(report)
    assert "Cannot tell whether they stopped" in text and "| leg/gw | **outside the mesh** (`unknown`) | 1.00 |" in text
    assert "Cannot tell whether they stopped" in html_page(report)
    assert json.loads(to_json(report))["undetermined"][0]["destination"] == {"namespace": "leg", "service": "gw"}


def test_the_timeline_places_each_policy_before_in_or_after_a_historical_window() -> None:
    """The window is 10:06:40 to 11:06:40 on 2026-11-18 (AT); policies are read days later."""
    policies = [
        Policy("v", "default", created="2026-11-18T20:00:00Z", mode=Mode.STRICT),  # after the window
        Policy("a", "default", created="2026-01-01T00:00:00Z", changed="2026-11-19T00:00:00Z", mode=Mode.STRICT),
        Policy("b", "default", created="2026-11-18T10:30:00Z", changed="2026-11-18T12:00:00Z", mode=Mode.STRICT),
        Policy("c", "default", created="2026-01-01T00:00:00Z", changed="2026-11-18T11:06:40Z", mode=Mode.STRICT),
        Policy("d", "default", created="2026-01-01T00:00:00Z", changed="2026-11-18T10:06:39Z", mode=Mode.STRICT),
    ]
    plaintext = {(ns, "s", "s", "api", "pay"): 0.5 for ns in "vabcd"}
    report = build_report(
        Traffic({(ns, "s"): 1.0 for ns in "vabcd"}, plaintext),
        Traffic({}, {}),
        services=[],
        policies=resolve(policies, root_namespace="istio-system"),
        at=AT,
        window="1h",
    )
    when = {p.ref: p.when for p in report.policies}
    assert when == {
        "v/default": "created after the window (2026-11-18T20:00:00Z)",
        "a/default": "changed after the window (2026-11-19T00:00:00Z)",
        "b/default": "created during the window (2026-11-18T10:30:00Z), "
        "changed after the window (2026-11-18T12:00:00Z)",
        "c/default": "changed during the window (2026-11-18T11:06:40Z)",  # the window's end is in it
        "d/default": "no change",
    }
    flags = {p.ref: (p.created_in_window, p.changed_in_window, p.created_after_window) for p in report.policies}
    assert flags["v/default"] == (False, False, True) and flags["a/default"] == (False, False, False)
    why = {c.destination.namespace: c.allowance.text for c in report.offenders if c.allowance}
    assert why["v"].endswith(
        "v/default created after the window (2026-11-18T20:00:00Z): it did not apply to this traffic"
    )
    assert "during the window" not in why["a"] and "a/default changed after the window" in why["a"]
    assert why["d"] == "no policy allows it (STRICT from d/default)"
    assert "| v/default | namespace-wide | STRICT | 2026-11-18T20:00:00Z | 2026-11-18T20:00:00Z | created after" in (
        markdown(report)
    )
    doc = json.loads(to_json(report))["policies"]
    assert {p["policy"]: p["changed_after_window"] for p in doc} == {
        "a/default": True, "b/default": True, "c/default": False, "d/default": False, "v/default": True,
    }  # fmt: skip


def test_a_caller_still_sending_plaintext_to_the_service_under_another_app_has_not_stopped() -> None:
    """cat/search's pods were relabelled app=search → app=search-v2; web still sends it 1 req/s of plaintext."""
    report = build_report(
        Traffic({("cat", "search"): 2.0}, {("cat", "search", "search-v2", "web", "fe"): 1.0}),
        Traffic(
            {("cat", "search"): 2.0},
            {("cat", "search", "search", "web", "fe"): 1.0, ("cat", "search", "search", "cron", "fe"): 0.5},
        ),
        services=[],
        policies=resolve([], root_namespace="istio-system"),
        at=AT,
        window="1h",
    )
    assert [(c.target, c.name, c.rate) for c in report.offenders] == [("cat/search (app=search-v2)", "fe/web", 1.0)]
    assert [(c.target, c.name, c.previous_rate) for c in report.resolved] == [("cat/search", "fe/cron", 0.5)]
    assert "fe/web" not in to_json(report).split('"resolved"')[1].split('"undetermined"')[0]


def test_only_in_mesh_callers_that_stopped_sending_to_the_service_are_asked_about_on_their_side() -> None:
    before = {
        ("cat", "search", "search", "web", "fe"): 1.0,  # relabelled: still sends (to app=search-v2)
        ("cat", "search", "search", "cron", "fe"): 0.5,  # stopped: asked
        ("cat", "search", "search", "unknown", "unknown"): 0.5,  # outside the mesh: no proxy to ask
        ("cat", "search", "search", "gw", "fe"): 0.5,  # already seen sending to a destination that reports nothing
        ("cat", "search", "search", "old", "fe"): 0.0,  # sent nothing
    }
    current = Traffic({}, {("cat", "search", "search-v2", "web", "fe"): 1.0}, {("cat", "search", "gw", "fe"): 0.5})
    assert stopped_in_mesh(current, Traffic({}, before)) == [("cat", "search", "cron", "fe")]


def test_an_exception_created_after_a_historical_window_neither_calms_the_verdict_nor_passes_the_gate() -> None:
    """STRICT vault; its PERMISSIVE exception for app=s is created at 20:00, after the window (to 11:06:40).
    The same exception created before the window calms the verdict and passes the gate (the control)."""

    def judged(created: str) -> Report:
        policies = [
            Policy("vault", "default", created="2020-01-01T00:00:00Z", mode=Mode.STRICT),
            Policy("vault", "exc", created=created, selector={"app": "s"}, mode=Mode.PERMISSIVE),
        ]
        return build_report(
            Traffic({("vault", "s"): 1.0}, {("vault", "s", "s", "api", "pay"): 0.5}),
            Traffic({}, {}),
            services=[],
            policies=resolve(policies, root_namespace="istio-system"),
            at=AT,
            window="1h",
        )

    later, before = judged("2026-11-18T20:00:00Z"), judged("2026-11-18T09:00:00Z")
    why = later.offenders[0].allowance
    assert why is not None and why.evidence.value == "no policy allows it" and not why.exception
    assert why.text == (
        "no policy allows it (STRICT from vault/default); "
        "vault/exc created after the window (2026-11-18T20:00:00Z): it did not apply to this traffic"
    )
    assert [n.verdict for n in later.namespaces] == [Verdict.STRICT_PLAINTEXT]
    assert gate.failures(later, gate.parse("strict-plaintext")) == [
        "strict-plaintext: plaintext no exception allows reaches STRICT vault"
    ]
    assert "it did not apply" in markdown(later) and "it did not apply" in to_json(later)
    assert [n.verdict for n in before.namespaces] == [Verdict.STRICT_EXCEPTED]
    assert gate.failures(before, gate.parse("strict-plaintext")) == []
    assert {p.ref: p.created_after_window for p in later.policies} == {"vault/default": False, "vault/exc": True}


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, "n/a"),
        (0.0, "+0.00 pts"),
        (-0.0, "+0.00 pts"),
        (-0.001, "-0.001 pts"),
        (0.0012345, "+0.00123 pts"),
        (-0.004999, "-0.005 pts"),
        (-0.005, "-0.01 pts"),
        (4.8249, "+4.82 pts"),
        (-25.0, "-25.00 pts"),
        (20.000000000000007 - 20.0, "+0.00 pts"),  # two equal coverages computed by two float paths
        (-7.1e-15, "+0.00 pts"),
        (2e-9, "+0.000000002 pts"),  # one request in 5 * 10^10 still shows
    ],
)
def test_changes_never_read_minus_zero(value: float | None, text: str) -> None:
    assert change_text(value) == text


def test_the_gate_line_is_never_in_scientific_notation() -> None:
    dropped = blind_report(swap=True)  # -25 pts
    assert gate.failures(dropped, gate.parse("coverage-drop:0.00001")) == [
        "coverage-drop:0.00001: mesh -25.00 pts, legacy -25.00 pts"
    ]
    assert gate.failures(dropped, gate.parse("coverage-drop"))[0].startswith("coverage-drop:0: mesh")


def test_an_empty_mesh_reads_no_traffic_without_a_count() -> None:
    report = build_report(
        Traffic({}, {}), Traffic({}, {}), services=[], policies=resolve([], root_namespace="istio-system"), at=AT,
        window="1h",
    )  # fmt: skip
    for text in (markdown(report), summary(report)[1], html_page(report)):
        assert "Mesh: no traffic in the window" in text.replace("**", "").replace("<span", " ")
        assert "of 0 requests" not in text


def test_truncating_the_event_keeps_the_unverified_flows_and_the_title_names_the_flag() -> None:
    plaintext = {("legacy", "gw", "gw", f"w{i:04d}", "many"): 0.001 for i in range(300)}
    current = Traffic({("legacy", "gw"): 3.0}, plaintext, unverified={("legacy", "old", "app", "shop"): 1.9})
    report = build_report(
        current, Traffic({}, {}), services=[], policies=resolve([], root_namespace="istio-system"), at=AT, window="1h"
    )
    title, text = summary(report)
    assert "more lines in the full report" in text and len(text) <= 4000
    assert "- legacy/old ← shop/app: 1.90 req/s unverified" in text
    assert title.endswith("1 blocked; 1 also flagged: destination without sidecar: traffic unverified")


def test_a_selector_for_another_app_neither_calms_the_verdict_nor_passes_the_gate() -> None:
    policies = [
        Policy("vault", "default", mode=Mode.STRICT),
        Policy("vault", "other", selector={"app": "other", "version": "v1"}, mode=Mode.PERMISSIVE),
    ]
    report = build_report(
        Traffic({("vault", "secrets"): 2.0}, {("vault", "secrets", "secrets", "api", "pay"): 0.5}),
        Traffic({}, {}),
        services=[],
        policies=resolve(policies, root_namespace="istio-system"),
        at=AT,
        window="1h",
    )
    assert report.namespaces[0].verdict is Verdict.STRICT_PLAINTEXT
    assert report.offenders[0].allowance is not None
    assert report.offenders[0].allowance.text == "no policy allows it (STRICT from vault/default)"
    assert gate.failures(report, gate.parse("strict-plaintext")) == [
        "strict-plaintext: plaintext no exception allows reaches STRICT vault"
    ]
