"""The query layer's façade: figures per group (service, version, caller…) at one instant.

A measurement runs the four grouped queries of `promql.figure_queries` concurrently and takes the
ratios here, so that a group with traffic always gets every figure it has data for (0 % is a
figure) and a group without traffic gets none. A failed query costs only the figures that need it.
Answers are decoded as they arrive, and figures are handed on (`on_figures`) in two batches: every
figure the answers allow once only the slowest query is outstanding (usually the p99), then the rest,
so that most points are on their way while that query still runs.
A sample that is not finite (NaN, ±Inf) never makes a figure: a group whose numerator or p99 is not
finite gets no such figure (never 0 % or 100 %), and is counted in `Measurement.non_finite`.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Literal

from exporter.errors import QueryError
from exporter.model import Figures
from exporter.query import promql
from exporter.query.prometheus import Vector as Decoded
from exporter.query.prometheus import vector_by

if TYPE_CHECKING:
    from exporter.query.prometheus import PrometheusClient

Key = tuple[str, ...]
Vector = Mapping[Key, float]
Source = Literal["raw", "recorded", "auto"]
SOURCES: tuple[Source, ...] = ("raw", "recorded", "auto")


@dataclass(frozen=True)
class Measurement:
    """Each figure's values per group key, and the queries that failed (by name: requests, ok, mtls, p99)."""

    values: dict[str, dict[Key, float]]
    """By `Figures` field name: the groups with a value (see figure_values)."""
    traffic_known: bool = True
    """False when the request totals failed: the groups are then those with a p99."""
    errors: dict[str, QueryError] = field(default_factory=dict)
    non_finite: dict[str, int] = field(default_factory=dict)
    """Figures left out because a sample they need was NaN or ±Inf, by query name."""
    source: Literal["raw", "recorded"] = "raw"
    """Whether the figures came from raw Istio series or from the recorded series of `exporter rules`."""

    @functools.cached_property
    def figures(self) -> dict[Key, Figures]:
        """Figures per group with traffic (built on first use: a daemon's cycle needs only `values`)."""
        return _assemble(self.values, traffic_known=self.traffic_known)


FIGURES: tuple[str, ...] = tuple(f.name for f in fields(Figures))
QUERY_OF = {"request_rate": "requests", "success_rate_pct": "ok", "mtls_coverage_pct": "mtls", "p99_latency_ms": "p99"}
"""The query each figure reads besides the request totals (every figure needs those: which groups had traffic)."""
OnFigures = Callable[[dict[str, dict[Key, float]]], None]
"""Called with figures (their values per group, by figure name) as soon as the queries they need have
answered: at most twice a measurement (see the module's docstring)."""


def figure_values(figure: str, vectors: Mapping[str, Vector | None]) -> dict[Key, float]:
    """One figure's values per group, from the answered vectors (None where a query failed): only
    groups with traffic in the window get one (0 % is a value; no traffic or a non-finite sample is
    none). When the request totals failed, only a finite p99 proves there was traffic."""
    totals, part = vectors.get("requests"), vectors.get(QUERY_OF[figure])
    if totals is None:
        return dict(part or {}) if figure == "p99_latency_ms" else {}
    traffic = [(key, total) for key, total in totals.items() if total > 0]  # 0: series but no request
    if figure == "request_rate":
        return dict(traffic)
    if part is None:
        return {}
    if figure == "p99_latency_ms":
        return {key: part[key] for key, _ in traffic if key in part}
    bad, share = part.non_finite if isinstance(part, Decoded) else frozenset(), part.get
    # a ratio: no numerator series is 0 %, not nothing; a non-finite numerator is no figure at all
    return {key: min(100.0, 100.0 * share(key, 0.0) / total) for key, total in traffic if key not in bad}


def figures_from(vectors: Mapping[str, Vector | None]) -> dict[Key, Figures]:
    """Combine the four vectors (None where its query failed) into figures per group with traffic."""
    values = {figure: figure_values(figure, vectors) for figure in FIGURES}
    return _assemble(values, traffic_known=vectors.get("requests") is not None)


def _assemble(values: Mapping[str, Mapping[Key, float]], *, traffic_known: bool) -> dict[Key, Figures]:
    keys = values["request_rate"] if traffic_known else values["p99_latency_ms"]
    rate, success, mtls, p99 = (values[figure] for figure in FIGURES)  # Figures' field order
    return {key: Figures(rate.get(key), success.get(key), mtls.get(key), p99.get(key)) for key in keys}


def non_finite_figures(vectors: Mapping[str, Vector | None]) -> dict[str, int]:
    """How many figures of groups with traffic `figures_from` left out for a non-finite sample, by query."""
    totals = vectors.get("requests")
    counts: dict[str, int] = {}
    if isinstance(totals, Decoded) and totals.non_finite:
        counts["requests"] = len(totals.non_finite)
    for name in ("ok", "mtls", "p99"):
        vector = vectors.get(name)
        bad = vector.non_finite if isinstance(vector, Decoded) else ()
        if n := sum(1 for key in bad if (totals or {}).get(key, 0.0) > 0):
            counts[name] = n
    return counts


def measure(
    client: PrometheusClient,
    *,
    at: float,
    window: str,
    by: Sequence[str] = promql.SERVICE_LABELS,
    matchers: Sequence[promql.Matcher] = (),
    offset: str | None = None,
    q: float = 0.99,
    on_figures: OnFigures | None = None,
) -> Measurement:
    """Figures for every group of `by` labels with destination-reported traffic in `window` before `at`;
    `on_figures` gets the figures as soon as their queries have answered (the p99 is usually last)."""
    queries = promql.figure_queries(by, window=window, matchers=matchers, offset=offset, q=q)
    return _measured(_stream(client, queries, at=at, by=by, on_figures=on_figures), source="raw")


@dataclass
class _Answers:
    """The vectors answered so far (None: the query failed), their errors, and the figures emitted."""

    vectors: dict[str, Vector | None] = field(default_factory=dict)
    errors: dict[str, QueryError] = field(default_factory=dict)
    values: dict[str, dict[Key, float]] = field(default_factory=dict)


def _stream(
    client: PrometheusClient,
    queries: Mapping[str, str],
    *,
    at: float,
    by: Sequence[str],
    on_figures: OnFigures | None,
    until: Callable[[_Answers], bool] = lambda answers: False,
) -> _Answers:
    """Decode each answer as it arrives and hand on the figures whose queries have all answered, once
    only one query is outstanding and once none is; stops early (the rest unread) when `until` says so."""
    answers = _Answers()
    for name, answer in client.query_each(queries, at=at):
        try:
            if isinstance(answer, QueryError):
                raise answer
            answers.vectors[name] = vector_by(answer, by, query=queries[name], set_aside_non_finite=True)
        except QueryError as e:
            answers.vectors[name] = None
            answers.errors[name] = e
        if until(answers):
            break
        if len(answers.vectors) < len(queries) - 1:  # two or more outstanding: wait, so as to batch
            continue
        ready = {
            figure: figure_values(figure, answers.vectors)
            for figure in FIGURES
            if figure not in answers.values and {"requests", QUERY_OF[figure]} <= answers.vectors.keys()
        }
        answers.values.update(ready)
        if on_figures is not None and any(ready.values()):
            on_figures({figure: values for figure, values in ready.items() if values})
    return answers


def _measured(answers: _Answers, *, source: Literal["raw", "recorded"]) -> Measurement:
    values = {figure: answers.values.get(figure, {}) for figure in FIGURES}
    traffic_known = answers.vectors.get("requests") is not None
    return Measurement(values, traffic_known, answers.errors, non_finite_figures(answers.vectors), source=source)


_auto_lock = threading.Lock()
_auto_last: dict[str, str] = {}  # window → the source `auto` chose last, so each switch is logged once


def _auto_chose(window: str, chosen: str) -> None:
    with _auto_lock:
        previous = _auto_last.get(window)
        _auto_last[window] = chosen
    if previous != chosen:
        import structlog

        structlog.get_logger("exporter.query.figures").info(
            "figure source",
            source=chosen,
            previous=previous,
            window=window,
            recorded_series=promql.recorded_name("requests", window=window),
        )


def measure_services(
    client: PrometheusClient,
    *,
    at: float,
    window: str,
    matchers: Sequence[promql.Matcher] = (),
    source: Source = "raw",
    on_figures: OnFigures | None = None,
) -> Measurement:
    """Figures per (namespace, service), from raw Istio series or from the recorded series.

    `auto` reads the recorded series and falls back to the raw queries, for every service at once,
    when the recorded request-rate series are absent (rules not installed, or not evaluated yet); a
    failed recorded query is an error like any other, not a reason to double the load on Prometheus.
    """
    by = promql.SERVICE_LABELS
    if source == "raw":
        return measure(client, at=at, window=window, matchers=matchers, on_figures=on_figures)
    queries = promql.recorded_figure_queries(by, window=window, matchers=matchers)

    def absent(answers: _Answers) -> bool:  # `auto` and the recorded request rates answered with no series
        return source == "auto" and answers.vectors.get("requests", None) == {}

    answers = _stream(client, queries, at=at, by=by, on_figures=on_figures, until=absent)
    if source == "auto":
        _auto_chose(window, "raw" if absent(answers) else "recorded")
        if absent(answers):
            return measure(client, at=at, window=window, matchers=matchers, on_figures=on_figures)
    return _measured(answers, source="recorded")
