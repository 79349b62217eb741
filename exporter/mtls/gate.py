"""The report's CI gate: conditions named by `--fail-on`, parsed and judged against a report (pure)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from exporter.mtls.model import Report, Verdict
from exporter.mtls.render import change_text

CONDITIONS = ("strict-plaintext", "coverage-drop", "unverified")
"""strict-plaintext: a STRICT namespace receives plaintext that no exception allows;
coverage-drop[:N]: the mesh or a namespace lost more than N points (default 0) since the previous window;
unverified: callers reach a destination without a sidecar."""


@dataclass(frozen=True)
class Condition:
    name: str
    points: float = 0.0
    """For coverage-drop: the largest drop, in percentage points, that still passes."""


def parse(text: str) -> tuple[Condition, ...]:
    """`strict-plaintext,coverage-drop:0.5` → conditions; ValueError naming the bad part."""
    out = []
    for part in (p.strip() for p in text.split(",")):
        name, _, arg = part.partition(":")
        if name not in CONDITIONS:
            raise ValueError(f"unknown condition {part!r} (expected {', '.join(CONDITIONS)})")
        if arg and name != "coverage-drop":
            raise ValueError(f"{name} takes no argument, got {part!r}")
        points = 0.0
        if arg:
            try:
                points = float(arg)
            except ValueError:
                raise ValueError(f"{part!r}: the drop must be a number of percentage points") from None
            if not 0 <= points <= 100:
                raise ValueError(f"{part!r}: the drop must be within 0..100 points")
        out.append(Condition(name, points))
    return tuple(out)


def _points(value: float) -> str:
    """`0.5`, `2`, `0.00001`: the threshold as written, never in scientific notation (`1e-05`)."""
    text = f"{Decimal(repr(value)):f}"
    return text.removesuffix(".0")


def failures(report: Report, conditions: Sequence[Condition]) -> list[str]:
    """One line per condition that holds on the report (empty: the gate passes)."""
    out = []
    for c in conditions:
        if c.name == "strict-plaintext":
            hit = [n.namespace for n in report.namespaces if n.verdict is Verdict.STRICT_PLAINTEXT]
            if hit:
                out.append(f"strict-plaintext: plaintext no exception allows reaches STRICT {', '.join(hit)}")
        elif c.name == "coverage-drop":
            rows = [("mesh", report.mesh.change)] + [(n.namespace, n.coverage.change) for n in report.namespaces]
            hit = [
                f"{name} {change_text(change)}" for name, change in rows if change is not None and -change > c.points
            ]
            if hit:
                out.append(f"coverage-drop:{_points(c.points)}: {', '.join(hit)}")
        elif c.name == "unverified" and report.unverified:
            blind = sorted({str(u.destination) for u in report.unverified})
            out.append(f"unverified: destinations without sidecar: {', '.join(blind)}")
    return out
