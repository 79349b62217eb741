"""Renders the mTLS coverage report: Markdown, JSON, a self-contained HTML page, and the Datadog event summary.

The HTML page has no external assets (inline CSS, inline SVG bar charts, no script) and escapes every
name it shows. A coverage below 100 never shows as 100.00 %, so a namespace that still had a
plaintext request never looks clean.
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from exporter.mtls.model import Caller, Coverage, NamespaceReport, Report, ServiceReport, Trend, Verdict

EVENT_TEXT_LIMIT = 3900  # Datadog events take 4000 characters of text


# ------------------------------------------------------------------------------------------- numbers
def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def pct_text(value: float | None) -> str:
    """`97.31 %`, `—` for no traffic; never `100.00 %` unless every request used mTLS (99.999 → 99.99)."""
    if value is None:
        return "—"
    return f"{min(round(value, 2), 99.99) if value < 100.0 else 100.0:.2f} %"


def change_text(value: float | None) -> str:
    return "—" if value is None else f"{value:+.2f} pts"


def count_text(value: float | None) -> str:
    return "—" if value is None else f"{round(value):,}"


def rate_text(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:,.2f}" if value >= 0.1 or value == 0 else f"{value:.3g}"


def _cov(c: Coverage | None) -> float | None:
    return None if c is None else c.pct


def _requests(c: Coverage | None) -> float | None:
    return None if c is None else c.requests


# ------------------------------------------------------------------------------------------ markdown
def _md(text: object) -> str:
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("`", "\\`").replace("*", "\\*")


def _table(header: Sequence[str], align: str, rows: Iterable[Sequence[str]]) -> list[str]:
    """A Markdown table; `align` has one letter per column: l (left) or r (right)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---:" if a == "r" else "---" for a in align) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _policy(ns: NamespaceReport) -> str:
    return f"{ns.policy.mode} ({ns.policy.source})"


def _verdict_counts(report: Report) -> str:
    parts = [f"{report.count(v)} {v}" for v in Verdict if report.count(v)]
    return " · ".join(parts) if parts else "no namespaces"


def _caller_md(c: Caller) -> str:
    return "**outside the mesh** (`unknown`)" if c.outside_mesh else _md(c.name)


def markdown(report: Report) -> str:
    """The report for a wiki page or a pull request."""
    mesh = report.mesh
    out = [
        "# mTLS coverage report",
        "",
        f"Window **{_md(report.window)}** ending {_iso(report.at)}, compared with the {_md(report.window)} before "
        f"(ending {_iso(report.at - report.seconds)}). Coverage = mutual-TLS requests / all requests, as the "
        "destination proxies report them, weighted by requests.",
        "",
        f"**Mesh: {pct_text(_cov(mesh.current))}** of {count_text(_requests(mesh.current))} requests "
        f"(previous window {pct_text(_cov(mesh.previous))}, change {change_text(mesh.change)}). "
        f"Mesh-wide policy: {report.mesh_policy.mode} ({_md(report.mesh_policy.source)}).",
        "",
        f"Namespaces: {_verdict_counts(report)}.",
        "",
        "## Namespaces (worst first)",
        "",
    ]
    out += _table(
        ("Namespace", "Policy", "Coverage", "Requests", "Previous", "Change", "Verdict"),
        "llrrrrl",
        (
            (
                _md(ns.namespace),
                _md(_policy(ns)),
                pct_text(_cov(ns.coverage.current)),
                count_text(_requests(ns.coverage.current)),
                pct_text(_cov(ns.coverage.previous)),
                change_text(ns.coverage.change),
                f"**{ns.verdict}**",
            )
            for ns in report.namespaces
        ),
    )
    out += ["", "## Plaintext callers", ""]
    if report.offenders:
        out += _table(
            ("Destination", "Caller", "Plaintext req/s", "Plaintext requests", "Previous req/s"),
            "llrrr",
            (
                (
                    _md(c.destination),
                    _caller_md(c),
                    rate_text(c.rate),
                    count_text(c.rate * report.seconds),
                    rate_text(c.previous_rate),
                )
                for c in report.offenders
            ),
        )
    else:
        out.append("No plaintext request in the window.")
    if report.resolved:
        out += ["", "Stopped sending plaintext since the previous window:", ""]
        out += _table(
            ("Destination", "Caller", "Previous req/s"),
            "llr",
            ((_md(c.destination), _caller_md(c), rate_text(c.previous_rate)) for c in report.resolved),
        )
    out += ["", "## Migrated services (worst first)", ""]
    out += _table(
        ("Service", "Coverage", "Requests", "Req/s", "Previous", "Change"),
        "lrrrrr",
        (
            (
                _md(s.service),
                pct_text(_cov(s.coverage.current)),
                count_text(_requests(s.coverage.current)),
                rate_text(None if s.coverage.current is None else s.coverage.current.rate),
                pct_text(_cov(s.coverage.previous)),
                change_text(s.coverage.change),
            )
            for s in report.services
        ),
    )
    notes = _notes(report)
    if notes:
        out += ["", "## Policy notes", ""] + [f"- {_md(note)}" for note in notes]
    return "\n".join(out) + "\n"


def _notes(report: Report) -> list[str]:
    notes = [f"{ns.namespace}: {e.describe()}" for ns in report.namespaces for e in ns.policy.exceptions]
    return notes + [f"ignored: {text}" for text in report.ignored_policies]


# ---------------------------------------------------------------------------------------------- json
def _trend_json(trend: Trend) -> dict[str, Any]:
    c, p = trend.current, trend.previous
    return {
        "coverage_pct": _cov(c),
        "requests": _requests(c),
        "request_rate": None if c is None else c.rate,
        "plaintext_request_rate": None if c is None else c.plaintext_rate,
        "previous": None
        if p is None
        else {
            "coverage_pct": p.pct,
            "requests": p.requests,
            "request_rate": p.rate,
            "plaintext_request_rate": p.plaintext_rate,
        },
        "change_pct_points": trend.change,
    }


def _caller_json(c: Caller) -> dict[str, Any]:
    return {
        "destination": {"namespace": c.destination.namespace, "service": c.destination.name},
        "source_workload": c.workload,
        "source_workload_namespace": c.namespace,
        "outside_mesh": c.outside_mesh,
        "request_rate": c.rate,
        "previous_request_rate": c.previous_rate,
    }


def to_json(report: Report) -> str:
    """The report for scripts (rates in requests per second; `null` where there is no data)."""
    doc = {
        "evaluated_at": report.at,
        "window": report.window,
        "window_seconds": report.seconds,
        "mesh": {
            **_trend_json(report.mesh),
            "policy": {"mode": str(report.mesh_policy.mode), "source": report.mesh_policy.source},
        },
        "namespaces": [
            {
                "namespace": ns.namespace,
                "verdict": ns.verdict.name.lower(),
                "verdict_text": str(ns.verdict),
                "policy": {
                    "mode": str(ns.policy.mode),
                    "source": ns.policy.source,
                    "exceptions": [
                        {
                            "policy": e.policy,
                            "selector": dict(e.selector),
                            "mode": str(e.mode),
                            "ports": {port: str(mode) for port, mode in e.ports.items()},
                        }
                        for e in ns.policy.exceptions
                    ],
                },
                **_trend_json(ns.coverage),
                "plaintext_callers": [_caller_json(c) for c in ns.callers],
            }
            for ns in report.namespaces
        ],
        "services": [
            {"namespace": s.service.namespace, "service": s.service.name, **_trend_json(s.coverage)}
            for s in report.services
        ],
        "offenders": [_caller_json(c) for c in report.offenders],
        "resolved": [_caller_json(c) for c in report.resolved],
        "ignored_policies": list(report.ignored_policies),
        "promql_requests": report.promql_requests,
    }
    return json.dumps(doc, indent=2) + "\n"


# ---------------------------------------------------------------------------------------------- html
_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2rem auto;max-width:72rem;
padding:0 1rem;color:#1f2328;background:#fff}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{margin-top:2rem;border-bottom:1px solid #d0d7de;padding-bottom:.3rem}
table{border-collapse:collapse;margin:.5rem 0 1rem;width:100%}th,td{padding:.3rem .6rem;border-bottom:1px solid #eaeef2;
text-align:left;vertical-align:top}th{background:#f6f8fa}td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
.muted{color:#59636e}.big{font-size:1.3rem;font-weight:600}
.verdict{display:inline-block;padding:.05rem .5rem;border-radius:1rem;font-weight:600;font-size:.85rem;
white-space:nowrap}
.v-ready{background:#dafbe1;color:#116329}.v-blocked{background:#fff1c2;color:#7d4e00}
.v-strict_clean{background:#ddf4ff;color:#0550ae}.v-strict_plaintext{background:#ffe1e1;color:#a40e26}
.v-disabled,.v-no_traffic{background:#eaeef2;color:#59636e}
section.ns{border:1px solid #d0d7de;border-radius:6px;padding:.2rem 1rem 1rem;margin:1rem 0}
svg text{font:12px system-ui,sans-serif;fill:#1f2328}svg .track{fill:#eaeef2}svg .prev{stroke:#1f2328;stroke-width:2}
svg .good{fill:#2da44e}svg .warn{fill:#d4a72c}svg .bad{fill:#cf222e}
"""
_BAR_X, _BAR_W, _ROW_H = 230, 360, 26


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _fill(pct: float) -> str:
    return "good" if pct >= 100.0 else "bad" if pct < 50.0 else "warn"


def bar_chart(title: str, bars: Sequence[tuple[str, Trend]]) -> str:
    """An inline SVG: one horizontal bar per (label, trend), coverage as length, the previous window as a tick."""
    height = _ROW_H * len(bars) + 8
    out = [
        f'<svg class="chart" role="img" aria-label="{_e(title)}" width="{_BAR_X + _BAR_W + 110}" '
        f'height="{height}" viewBox="0 0 {_BAR_X + _BAR_W + 110} {height}"><title>{_e(title)}</title>'
    ]
    for i, (label, trend) in enumerate(bars):
        y = 4 + i * _ROW_H
        c, p = trend.current, trend.previous
        shown = label if len(label) <= 32 else label[:31] + "…"
        out.append(f'<g class="bar" data-label="{_e(label)}" data-coverage="{"" if c is None else f"{c.pct:.4f}"}">')
        out.append(f'<text x="0" y="{y + 15}">{_e(shown)}</text>')
        out.append(f'<rect class="track" x="{_BAR_X}" y="{y + 3}" width="{_BAR_W}" height="16" rx="3"/>')
        if c is not None:
            width = _BAR_W * c.pct / 100
            out.append(
                f'<rect class="fill {_fill(c.pct)}" x="{_BAR_X}" y="{y + 3}" width="{width:.1f}" height="16" rx="3"/>'
            )
        if p is not None:
            x = _BAR_X + _BAR_W * p.pct / 100
            tip = f"<title>previous window: {_e(pct_text(p.pct))}</title>"
            out.append(f'<line class="prev" x1="{x:.1f}" x2="{x:.1f}" y1="{y}" y2="{y + 22}">{tip}</line>')
        value = pct_text(_cov(c)) if c is not None else "no traffic"
        out.append(f'<text class="value" x="{_BAR_X + _BAR_W + 8}" y="{y + 15}">{_e(value)}</text></g>')
    out.append("</svg>")
    return "".join(out)


def _html_table(header: Sequence[str], numeric: Sequence[bool], rows: Iterable[Sequence[str]]) -> str:
    head = "".join(
        f'<th class="n">{_e(h)}</th>' if n else f"<th>{_e(h)}</th>" for h, n in zip(header, numeric, strict=True)
    )
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="n">{cell}</td>' if n else f"<td>{cell}</td>" for cell, n in zip(row, numeric, strict=True)
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _verdict_html(ns: NamespaceReport) -> str:
    return f'<span class="verdict v-{ns.verdict.name.lower()}">{_e(ns.verdict)}</span>'


def _caller_html(c: Caller) -> str:
    return "<strong>outside the mesh</strong> (<code>unknown</code>)" if c.outside_mesh else _e(c.name)


def _namespace_section(ns: NamespaceReport, services: Sequence[ServiceReport], seconds: float) -> str:
    bars = [(f"{ns.namespace} (namespace)", ns.coverage)] + [(s.service.name, s.coverage) for s in services]
    parts = [
        f'<section class="ns" id="ns-{_e(ns.namespace)}" data-namespace="{_e(ns.namespace)}">',
        f"<h3>{_e(ns.namespace)} {_verdict_html(ns)}</h3>",
        f'<p class="muted">Policy {_e(ns.policy.mode)} from {_e(ns.policy.source)} · '
        f"{_e(count_text(_requests(ns.coverage.current)))} requests · change {_e(change_text(ns.coverage.change))}</p>",
        bar_chart(f"mTLS coverage in {ns.namespace}", bars),
    ]
    if ns.callers:
        parts.append(
            _html_table(
                ("Destination", "Plaintext caller", "req/s", "Requests"),
                (False, False, True, True),
                (
                    (_e(c.destination.name), _caller_html(c), _e(rate_text(c.rate)), _e(count_text(c.rate * seconds)))
                    for c in ns.callers
                ),
            )
        )
    parts += [f'<p class="muted">{_e(e.describe())}</p>' for e in ns.policy.exceptions]
    parts.append("</section>")
    return "".join(parts)


def html_page(report: Report) -> str:
    """A self-contained page (inline CSS and SVG, no script, no external asset) that opens in any browser."""
    mesh = report.mesh
    by_ns: dict[str, list[ServiceReport]] = {}
    for s in report.services:
        by_ns.setdefault(s.service.namespace, []).append(s)
    overview = bar_chart("mTLS coverage per namespace", [(ns.namespace, ns.coverage) for ns in report.namespaces])
    body = [
        "<h1>mTLS coverage report</h1>",
        f'<p class="muted">Window {_e(report.window)} ending {_iso(report.at)}, compared with the window ending '
        f"{_iso(report.at - report.seconds)}. Coverage = mutual-TLS requests / all requests (destination-reported), "
        "weighted by requests. Bars: this window; black tick: the previous window.</p>",
        f'<p><span class="big" id="mesh-coverage">Mesh: {_e(pct_text(_cov(mesh.current)))}</span> of '
        f"{_e(count_text(_requests(mesh.current)))} requests · previous {_e(pct_text(_cov(mesh.previous)))} · change "
        f"{_e(change_text(mesh.change))} · mesh-wide policy {_e(report.mesh_policy.mode)} "
        f"({_e(report.mesh_policy.source)})</p>",
        f"<p>{_e(_verdict_counts(report))}</p>",
        "<h2>Namespaces</h2>",
        overview,
        _html_table(
            ("Namespace", "Policy", "Coverage", "Requests", "Previous", "Change", "Verdict"),
            (False, False, True, True, True, True, False),
            (
                (
                    f'<a href="#ns-{_e(ns.namespace)}">{_e(ns.namespace)}</a>',
                    _e(_policy(ns)),
                    _e(pct_text(_cov(ns.coverage.current))),
                    _e(count_text(_requests(ns.coverage.current))),
                    _e(pct_text(_cov(ns.coverage.previous))),
                    _e(change_text(ns.coverage.change)),
                    _verdict_html(ns),
                )
                for ns in report.namespaces
            ),
        ),
        *(_namespace_section(ns, by_ns.get(ns.namespace, []), report.seconds) for ns in report.namespaces),
        "<h2>Plaintext callers</h2>",
        _html_table(
            ("Destination", "Caller", "Plaintext req/s", "Plaintext requests", "Previous req/s"),
            (False, False, True, True, True),
            (
                (
                    _e(c.destination),
                    _caller_html(c),
                    _e(rate_text(c.rate)),
                    _e(count_text(c.rate * report.seconds)),
                    _e(rate_text(c.previous_rate)),
                )
                for c in report.offenders
            ),
        )
        if report.offenders
        else "<p>No plaintext request in the window.</p>",
    ]
    if report.resolved:
        body += [
            "<h3>Stopped sending plaintext since the previous window</h3>",
            _html_table(
                ("Destination", "Caller", "Previous req/s"),
                (False, False, True),
                ((_e(c.destination), _caller_html(c), _e(rate_text(c.previous_rate))) for c in report.resolved),
            ),
        ]
    body += [
        "<h2>Migrated services (worst first)</h2>",
        _html_table(
            ("Service", "Coverage", "Requests", "Req/s", "Previous", "Change"),
            (False, True, True, True, True, True),
            (
                (
                    _e(s.service),
                    _e(pct_text(_cov(s.coverage.current))),
                    _e(count_text(_requests(s.coverage.current))),
                    _e(rate_text(None if s.coverage.current is None else s.coverage.current.rate)),
                    _e(pct_text(_cov(s.coverage.previous))),
                    _e(change_text(s.coverage.change)),
                )
                for s in report.services
            ),
        ),
    ]
    notes = _notes(report)
    if notes:
        body += ["<h2>Policy notes</h2><ul>", *(f"<li>{_e(n)}</li>" for n in notes), "</ul>"]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>mTLS coverage report {_iso(report.at)}</title><style>{_CSS}</style></head>\n<body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )


# --------------------------------------------------------------------------------------------- event
def summary(report: Report, *, limit: int = EVENT_TEXT_LIMIT) -> tuple[str, str]:
    """Title and Markdown text (Datadog's %%% block) of the event posted with the gauges."""
    mesh = report.mesh
    title = f"mTLS coverage {pct_text(_cov(mesh.current))} over {report.window}: " + ", ".join(
        f"{report.count(v)} {v}" for v in (Verdict.READY, Verdict.BLOCKED, Verdict.STRICT_PLAINTEXT) if report.count(v)
    )
    lines = [
        f"Mesh: **{pct_text(_cov(mesh.current))}** of {count_text(_requests(mesh.current))} requests "
        f"(previous {pct_text(_cov(mesh.previous))}, change {change_text(mesh.change)}), window {report.window} "
        f"ending {_iso(report.at)}.",
        "",
        *(
            f"- {_md(ns.namespace)}: {pct_text(_cov(ns.coverage.current))}, {ns.policy.mode}: **{ns.verdict}**"
            for ns in report.namespaces
        ),
        "",
        "Plaintext callers:" if report.offenders else "No plaintext caller.",
        *(
            f"- {_md(c.destination)} ← {_caller_md(c)}: {rate_text(c.rate)} req/s"
            for c in sorted(report.offenders, key=lambda c: -c.rate)
        ),
    ]
    kept: list[str] = []
    size = 0
    for i, line in enumerate(lines):
        if size + len(line) + 1 > limit - 40:
            kept.append(f"… {len(lines) - i} more lines in the full report")
            break
        kept.append(line)
        size += len(line) + 1
    return title.rstrip(": "), "%%% \n" + "\n".join(kept) + "\n %%%"


RENDERERS: dict[str, Callable[[Report], str]] = {"markdown": markdown, "html": html_page, "json": to_json}
