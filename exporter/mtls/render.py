"""Renders the mTLS coverage report: Markdown, JSON, a self-contained HTML page, and the Datadog event summary.

The HTML page comes from the Jinja2 templates in exporter/mtls/templates (autoescaped: every name is
escaped by the engine) and has no external assets (inline CSS, inline SVG bar charts, no script). One
number format for every human output; a coverage below 100 never shows as 100.00 %, so a namespace that
still had a plaintext request never looks clean.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from exporter.mtls.model import (
    UNVERIFIED_FLAG,
    Caller,
    Coverage,
    NamespaceReport,
    Others,
    Report,
    ServiceReport,
    Trend,
    Verdict,
)
from exporter.timefmt import utc_text

if TYPE_CHECKING:
    import jinja2

EVENT_TEXT_LIMIT = 3900  # Datadog events take 4000 characters of text


# ------------------------------------------------------------------------------------------- numbers
def pct_text(value: float | None) -> str:
    """`97.31 %`, `no traffic`; never `100.00 %` unless every request used mTLS (99.999 → 99.99)."""
    if value is None:
        return "no traffic"
    return f"{min(round(value, 2), 99.99) if value < 100.0 else 100.0:.2f} %"


NOISE_PTS = 1e-9


def change_text(value: float | None) -> str:
    """`+4.82 pts`; below 0.005 in size, three significant digits (`-0.001 pts`), so a drop never reads
    `-0.00` or `+0.00`; `+0.00 pts` only for no change at all; `n/a` without both windows. Below 1e-9 pts
    a difference is floating-point noise of two equal coverages (one request in 10^11 moves 1e-9 pts)."""
    if value is None:
        return "n/a"
    if abs(value) < NOISE_PTS:
        value = 0.0
    if value != 0 and abs(value) < 0.005:
        return f"{'-' if value < 0 else '+'}{rate_text(abs(value))} pts"
    return f"{value + 0.0:+.2f} pts"  # + 0.0 turns -0.0 into 0.0


def count_text(value: float | None) -> str:
    return "0" if value is None else f"{round(value):,}"


def rate_text(value: float | None) -> str:
    """Requests per second: two decimals from 0.1 up, else three significant digits; never scientific notation."""
    if value is None or value == 0:
        return "0"
    if abs(value) >= 0.1:
        return f"{value:,.2f}"
    decimals = 2 - math.floor(math.log10(abs(value)))  # three significant digits
    text = f"{value:.{decimals}f}".rstrip("0")
    return text + "0" * max(0, 2 - len(text.split(".")[1]))


def _mesh_volume(mesh: Trend) -> str:
    """`92.34 % of 1,234 requests`; without traffic, `no traffic in the window` (never "no traffic of 0 requests")."""
    c = mesh.current
    return "no traffic in the window" if c is None else f"{pct_text(c.pct)} of {count_text(c.requests)} requests"


def _cov(c: Coverage | None) -> float | None:
    return None if c is None else c.pct


def _requests(c: Coverage | None) -> float | None:
    return None if c is None else c.requests


def _rate(c: Coverage | None) -> float | None:
    return None if c is None else c.rate


STOPPED_SCOPE = (
    "as the destination's proxies see it, and for a caller in the mesh as its own proxy confirms; a caller from "
    "outside the mesh that now reaches only pods of the destination without a sidecar is seen by neither"
)
UNDETERMINED = (
    "Cannot tell whether they stopped: these callers from outside the mesh sent plaintext in the previous window "
    "to a destination that reports nothing now, and no proxy on either side sees their traffic."
)
POLICY_STATEMENT = (
    "Policies are read as they are now, when the report runs, whatever the window: a policy changed "
    "during or after the window may not be the one that applied to its traffic."
)


def _service_groups(report: Report) -> dict[str, list[ServiceReport | Others]]:
    """Per namespace: its migrated services (worst first), then the row of its other destinations."""
    groups: dict[str, list[ServiceReport | Others]] = {ns.namespace: [] for ns in report.namespaces}
    for s in report.services:
        groups.setdefault(s.service.namespace, []).append(s)
    for ns in report.namespaces:
        if ns.others is not None:
            groups[ns.namespace].append(ns.others)
    return groups


def _row_name(row: ServiceReport | Others) -> str:
    if isinstance(row, Others):
        return f"other destinations, not migrated Services: {', '.join(row.names)}"
    flag = f" ({UNVERIFIED_FLAG}: {rate_text(row.unverified_rate)} req/s)" if row.unverified_rate > 0 else ""
    return f"{row.service.name}{flag}"


def _flow_why(c: Caller) -> str:
    return "" if c.allowance is None else c.allowance.text


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


def _ns_verdict(ns: NamespaceReport) -> str:
    flag = f" ({UNVERIFIED_FLAG})" if ns.unverified and ns.verdict is not Verdict.UNVERIFIED else ""
    return f"{ns.verdict}{flag}"


def markdown(report: Report) -> str:
    """The report for a wiki page or a pull request."""
    mesh = report.mesh
    out = [
        "# mTLS coverage report",
        "",
        f"Window **{_md(report.window)}** from {utc_text(report.start)} to {utc_text(report.at)}, compared with the "
        f"{_md(report.window)} before. Coverage = mutual-TLS requests / all requests, as the destination proxies "
        "report them, weighted by requests. A destination without a sidecar reports nothing: its callers' side "
        "shows its traffic as unverified (neither mutual TLS nor plaintext can be proven).",
        "",
        f"**Mesh: {_mesh_volume(mesh)}** (previous window {pct_text(_cov(mesh.previous))}, "
        f"change {change_text(mesh.change)}). "
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
                f"**{_ns_verdict(ns)}**",
            )
            for ns in report.namespaces
        ),
    )
    out += ["", "## Plaintext callers", ""]
    if report.offenders:
        out += _table(
            ("Destination", "Caller", "Plaintext req/s", "Plaintext requests", "Previous req/s", "Allowed by"),
            "llrrrl",
            (
                (
                    _md(c.target),
                    _caller_md(c),
                    rate_text(c.rate),
                    count_text(c.rate * report.seconds),
                    rate_text(c.previous_rate),
                    _md(_flow_why(c)),
                )
                for c in report.offenders
            ),
        )
    else:
        out.append("No plaintext request in the window.")
    if report.resolved:
        out += ["", f"Stopped sending plaintext since the previous window ({STOPPED_SCOPE}):", ""]
        out += _table(
            ("Destination", "Caller", "Req/s", "Previous req/s"),
            "llrr",
            ((_md(c.target), _caller_md(c), rate_text(0), rate_text(c.previous_rate)) for c in report.resolved),
        )
    if report.undetermined:
        out += ["", UNDETERMINED, ""]
        out += _table(
            ("Destination", "Caller", "Previous req/s"),
            "llr",
            ((_md(c.target), _caller_md(c), rate_text(c.previous_rate)) for c in report.undetermined),
        )
    if report.unverified:
        out += ["", "## Destinations without sidecar: traffic unverified", ""]
        out += [
            'Their callers\' proxies (`reporter="source"`) send these requests; the destination reports none of '
            "them: it has no sidecar, or the caller now reaches only its pods without one. Whether that traffic "
            "uses mutual TLS cannot be told from the caller's side.",
            "",
        ]
        out += _table(
            ("Destination", "Caller", "Req/s", "Previous req/s", "Previous plaintext req/s"),
            "llrrr",
            (
                (
                    _md(c.destination),
                    _caller_md(c),
                    rate_text(c.rate),
                    rate_text(c.previous_rate),
                    rate_text(c.previous_plaintext),
                )
                for c in report.unverified
            ),
        )
    out += ["", "## Services by namespace", ""]
    out += ["Each namespace's rows add up to its row in the namespace table.", ""]
    groups = _service_groups(report)
    out += _table(
        ("Namespace", "Service", "Coverage", "Requests", "Req/s", "Previous", "Change"),
        "llrrrrr",
        (
            (
                _md(ns),
                _md(_row_name(row)),
                pct_text(_cov(row.coverage.current)),
                count_text(_requests(row.coverage.current)),
                rate_text(_rate(row.coverage.current)),
                pct_text(_cov(row.coverage.previous)),
                change_text(row.coverage.change),
            )
            for ns, rows in groups.items()
            for row in rows
        ),
    )
    out += ["", "## Policies", "", _md(POLICY_STATEMENT), ""]
    out += _table(
        ("Policy", "Scope", "Mode", "Created", "Last change", "Window"),
        "llllll",
        ((_md(p.ref), _md(p.scope), str(p.mode), p.created, p.changed, p.when) for p in report.policies),
    )
    notes = _notes(report)
    if notes:
        out += ["", "## Policy notes", ""] + [f"- {_md(note)}" for note in notes]
    return "\n".join(out) + "\n"


def _notes(report: Report) -> list[str]:
    notes = [f"{ns.namespace}: {e.describe()}" for ns in report.namespaces for e in ns.policy.exceptions]
    return notes + [f"ignored: {text}" for text in report.ignored_policies]


# ---------------------------------------------------------------------------------------------- json
def _coverage_json(c: Coverage | None) -> dict[str, Any] | None:
    if c is None:
        return None
    return {
        "coverage_pct": c.pct,
        "requests": c.requests,
        "request_rate": c.rate,
        "plaintext_request_rate": c.plaintext_rate,
    }


def _trend_json(trend: Trend) -> dict[str, Any]:
    c = trend.current
    return {
        "coverage_pct": _cov(c),
        "requests": _requests(c),
        "request_rate": None if c is None else c.rate,
        "plaintext_request_rate": None if c is None else c.plaintext_rate,
        "previous": _coverage_json(trend.previous),
        "change_pct_points": trend.change,
    }


def _caller_json(c: Caller) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "destination": {"namespace": c.destination.namespace, "service": c.destination.name},
        "source_workload": c.workload,
        "source_workload_namespace": c.namespace,
        "outside_mesh": c.outside_mesh,
        "request_rate": c.rate,
        "previous_request_rate": c.previous_rate,
    }
    if c.allowance is not None:
        doc["destination_app"] = c.app
        doc["allowed_by"] = {
            "evidence": c.allowance.evidence.name.lower(),
            "policy": c.allowance.policy,
            "exception": c.allowance.exception,
            "text": c.allowance.text,
        }
    return doc


def _unverified_json(c: Caller) -> dict[str, Any]:
    return {**_caller_json(c), "previous_plaintext_request_rate": c.previous_plaintext}


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
        "verdict_counts": {v.name.lower(): report.count(v) for v in Verdict},
        "namespaces": [
            {
                "namespace": ns.namespace,
                "verdict": ns.verdict.name.lower(),
                "verdict_text": str(ns.verdict),
                "destination_without_sidecar": bool(ns.unverified),
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
                "other_destinations": None
                if ns.others is None
                else {"names": list(ns.others.names), **_trend_json(ns.others.coverage)},
                "plaintext_callers": [_caller_json(c) for c in ns.callers],
                "unverified": [_unverified_json(c) for c in ns.unverified],
            }
            for ns in report.namespaces
        ],
        "services": [
            {
                "namespace": s.service.namespace,
                "service": s.service.name,
                **_trend_json(s.coverage),
                "unverified_request_rate": s.unverified_rate,
            }
            for s in report.services
        ],
        "offenders": [_caller_json(c) for c in report.offenders],
        "resolved": [_caller_json(c) for c in report.resolved],
        "undetermined": [_caller_json(c) for c in report.undetermined],
        "unverified": [_unverified_json(c) for c in report.unverified],
        "policies": [
            {
                "policy": p.ref,
                "scope": p.scope,
                "mode": str(p.mode),
                "created": p.created,
                "last_change": p.changed,
                "created_in_window": p.created_in_window,
                "changed_in_window": p.changed_in_window,
                "created_after_window": p.created_after_window,
                "changed_after_window": p.changed_after_window,
            }
            for p in report.policies
        ],
        "policies_read_at_run_time": True,
        "ignored_policies": list(report.ignored_policies),
        "promql_requests": report.promql_requests,
    }
    return json.dumps(doc, indent=2) + "\n"


# ---------------------------------------------------------------------------------------------- html
@functools.cache
def _templates() -> jinja2.Environment:
    """The page's templates (Jinja2 loads with the first HTML page, not with the command line)."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("exporter.mtls", "templates"),
        autoescape=True,  # every name in the page is escaped by the template engine, not by hand
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters.update(pct=pct_text, change=change_text, count=count_text, rate=rate_text, iso=utc_text)
    return env


_BAR_X, _BAR_W, _ROW_H = 230, 360, 26


def _fill(pct: float) -> str:
    return "good" if pct >= 100.0 else "bad" if pct < 50.0 else "warn"


def _bars(bars: Sequence[tuple[str, Trend]]) -> list[dict[str, Any]]:
    """Geometry of one horizontal bar per (label, trend): coverage as length, the previous window as a tick."""
    out = []
    for i, (label, trend) in enumerate(bars):
        c, p = trend.current, trend.previous
        out.append(
            {
                "label": label,
                "shown": label if len(label) <= 32 else label[:31] + "…",
                "y": 4 + i * _ROW_H,
                "coverage": "" if c is None else f"{c.pct:.4f}",
                "fill": None if c is None else (_fill(c.pct), f"{_BAR_W * c.pct / 100:.1f}"),
                "prev": None if p is None else (f"{_BAR_X + _BAR_W * p.pct / 100:.1f}", pct_text(p.pct)),
                "value": pct_text(_cov(c)),
            }
        )
    return out


def _chart_size(n: int) -> dict[str, int]:
    return {"x": _BAR_X, "w": _BAR_W, "width": _BAR_X + _BAR_W + 110, "height": _ROW_H * n + 8}


def _service_bars(rows: Sequence[ServiceReport | Others]) -> list[tuple[str, Trend]]:
    return [(row.service.name, row.coverage) for row in rows if isinstance(row, ServiceReport)]


def html_page(report: Report) -> str:
    """A self-contained page (inline CSS and SVG, no script, no external asset) that opens in any browser."""
    groups = _service_groups(report)
    sections = [
        {
            "ns": ns,
            "rows": groups[ns.namespace],
            "bars": _bars([(f"{ns.namespace} (namespace)", ns.coverage), *_service_bars(groups[ns.namespace])]),
            "size": _chart_size(1 + len(_service_bars(groups[ns.namespace]))),
        }
        for ns in report.namespaces
    ]
    return (
        _templates()
        .get_template("report.html.j2")
        .render(
            r=report,
            verdicts=_verdict_counts(report),
            overview=_bars([(ns.namespace, ns.coverage) for ns in report.namespaces]),
            overview_size=_chart_size(len(report.namespaces)),
            sections=sections,
            notes=_notes(report),
            mesh_volume=_mesh_volume(report.mesh),
            policy_statement=POLICY_STATEMENT,
            undetermined=UNDETERMINED,
            stopped_scope=STOPPED_SCOPE,
            unverified_flag=UNVERIFIED_FLAG,
            is_service=lambda row: isinstance(row, ServiceReport),
        )
    )


# --------------------------------------------------------------------------------------------- event
def summary(report: Report, *, limit: int = EVENT_TEXT_LIMIT, dated: bool = True) -> tuple[str, str]:
    """Title and Markdown text (Datadog's %%% block) of the event posted with the gauges.

    The title counts every verdict class present, so its counts add up to the namespaces shown, then the
    namespaces that also carry the unverified flag. When the event cannot carry the window's end as its date
    (`dated=False`), the text names the window first. Unverified flows come before everything that can be cut.
    """
    mesh = report.mesh
    title = f"mTLS coverage {pct_text(_cov(mesh.current))} over {report.window}: " + ", ".join(
        f"{report.count(v)} {v}" for v in Verdict if report.count(v)
    )
    flagged = sum(1 for ns in report.namespaces if ns.unverified and ns.verdict is not Verdict.UNVERIFIED)
    if flagged:
        title += f"; {flagged} also flagged: {UNVERIFIED_FLAG}"
    window = f"window {report.window} from {utc_text(report.start)} to {utc_text(report.at)}"
    lines = [
        *([] if dated else [f"Report for the {window} (posted later).", ""]),
        f"Mesh: **{_mesh_volume(mesh)}** (previous {pct_text(_cov(mesh.previous))}, "
        f"change {change_text(mesh.change)}), "
        f"plaintext {rate_text(None if mesh.current is None else mesh.current.plaintext_rate)} req/s, {window}.",
        # unverified flows come first: a long list of namespaces or callers must not push them out of the text
        *(["", f"{UNVERIFIED_FLAG}:"] if report.unverified else []),
        *(f"- {_md(c.destination)} ← {_caller_md(c)}: {rate_text(c.rate)} req/s unverified" for c in report.unverified),
        "",
        *(
            f"- {_md(ns.namespace)}: {pct_text(_cov(ns.coverage.current))}, {ns.policy.mode}: **{_ns_verdict(ns)}**"
            for ns in report.namespaces
        ),
        "",
        "Plaintext callers:" if report.offenders else "No plaintext caller.",
        *(
            f"- {_md(c.target)} ← {_caller_md(c)}: {rate_text(c.rate)} req/s "
            f"(previous {rate_text(c.previous_rate)}); {_md(_flow_why(c))}"
            for c in sorted(report.offenders, key=lambda c: -c.rate)
        ),
        "",
        POLICY_STATEMENT,
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
