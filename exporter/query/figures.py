"""The query layer's façade: figures per group (service, version, caller…) at one instant.

A measurement runs the grouped queries of `promql.figure_queries` concurrently and takes the
ratios here (each figure as `model.CATALOGUE` describes it), so that a group with traffic always gets
every figure it has data for (0 % is a figure) and a group without traffic gets none. A failed query
costs only the figures that need it.
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
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from exporter.errors import QueryError
from exporter.model import CATALOGUE, FigureInfo, Figures
from exporter.query import promql
from exporter.query.prometheus import Vector as Decoded
from exporter.query.prometheus import vector_by

if TYPE_CHECKING:
    from exporter.query.prometheus import PrometheusClient

Key = tuple[str, ...]
Vector = Mapping[Key, float]
Source = Literal["raw", "recorded", "auto"]
Catalogue = Mapping[str, FigureInfo]


@dataclass(frozen=True)
class Measurement:
    """Each figure's values per group key, and the queries that failed (by name: requests, ok, mtls, p99)."""

    values: dict[str, dict[Key, float]]
    """By `Figures` field name: the groups with a value (see figure_values)."""
    errors: dict[str, QueryError] = field(default_factory=dict)
    non_finite: dict[str, int] = field(default_factory=dict)
    """Figures left out because a sample they need was NaN or ±Inf, by query name."""
    source: Literal["raw", "recorded"] = "raw"
    """Whether the figures came from raw Istio series or from the recorded series of `exporter rules`."""

    @functools.cached_property
    def figures(self) -> dict[Key, Figures]:
        """Figures per group with traffic (built on first use: a daemon's cycle needs only `values`)."""
        return _assemble(self.values)


OnFigures = Callable[[dict[str, dict[Key, float]]], None]
"""Called with figures (their values per group, by figure name) as soon as the queries they need have
answered: at most twice a measurement (see the module's docstring)."""


def figure_values(
    figure: str, vectors: Mapping[str, Vector | None], catalogue: Catalogue = CATALOGUE
) -> dict[Key, float]:
    """One figure's values per group, from the answered vectors (None where a query failed): only
    groups with traffic in the window get one (0 % is a value; no traffic or a non-finite sample is
    none). When the request totals failed, only a finite quantile proves there was traffic."""
    query = catalogue[figure].query
    totals, part, quantile = vectors.get("requests"), vectors.get(query), promql.FIGURE_QUERIES[query].quantile
    if totals is None:
        return dict(part or {}) if quantile else {}
    traffic = [(key, total) for key, total in totals.items() if total > 0]  # 0: series but no request
    if query == "requests":
        return dict(traffic)
    if part is None:
        return {}
    if quantile:
        return {key: part[key] for key, _ in traffic if key in part}
    bad, share = part.non_finite if isinstance(part, Decoded) else frozenset(), part.get
    # a ratio: no numerator series is 0 %, not nothing; a non-finite numerator is no figure at all
    return {key: min(100.0, 100.0 * share(key, 0.0) / total) for key, total in traffic if key not in bad}


def figures_from(vectors: Mapping[str, Vector | None], catalogue: Catalogue = CATALOGUE) -> dict[Key, Figures]:
    """Combine the vectors (None where its query failed) into figures per group with traffic."""
    return _assemble({figure: figure_values(figure, vectors, catalogue) for figure in catalogue})


def _assemble(values: Mapping[str, Mapping[Key, float]]) -> dict[Key, Figures]:
    """Figures for every group any figure has a value for: those with traffic (figure_values), or with a
    quantile when the request totals failed. A figure `Figures` has no field for is a TypeError."""
    keys = dict.fromkeys(key for by_key in values.values() for key in by_key)
    return {key: Figures(**{f: v[key] for f, v in values.items() if key in v}) for key in keys}


def non_finite_figures(vectors: Mapping[str, Vector | None], catalogue: Catalogue = CATALOGUE) -> dict[str, int]:
    """How many figures of groups with traffic `figures_from` left out for a non-finite sample, by query."""
    totals = vectors.get("requests")
    counts: dict[str, int] = {}
    if isinstance(totals, Decoded) and totals.non_finite:
        counts["requests"] = len(totals.non_finite)
    for name in promql.query_names(catalogue)[1:]:  # the request totals come first
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
    catalogue: Catalogue = CATALOGUE,
) -> Measurement:
    """Figures for every group of `by` labels with destination-reported traffic in `window` before `at`;
    `on_figures` gets the figures as soon as their queries have answered (the p99 is usually last)."""
    queries = promql.figure_queries(by, window=window, matchers=matchers, offset=offset, q=q, catalogue=catalogue)
    answers = _stream(client, queries, at=at, by=by, on_figures=on_figures, catalogue=catalogue)
    return _measured(answers, source="raw", catalogue=catalogue)


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
    catalogue: Catalogue,
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
            figure: figure_values(figure, answers.vectors, catalogue)
            for figure, info in catalogue.items()
            if figure not in answers.values and {"requests", info.query} <= answers.vectors.keys()
        }
        answers.values.update(ready)
        if on_figures is not None and any(ready.values()):
            on_figures({figure: values for figure, values in ready.items() if values})
    return answers


def _measured(answers: _Answers, *, source: Literal["raw", "recorded"], catalogue: Catalogue) -> Measurement:
    values = {figure: answers.values.get(figure, {}) for figure in catalogue}
    non_finite = non_finite_figures(answers.vectors, catalogue)
    return Measurement(values, answers.errors, non_finite, source=source)


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
    catalogue: Catalogue = CATALOGUE,
) -> Measurement:
    """Figures per (namespace, service), from raw Istio series or from the recorded series.

    `auto` reads the recorded series and falls back to the raw queries, for every service at once,
    when the recorded request-rate series are absent (rules not installed, or not evaluated yet); a
    failed recorded query is an error like any other, not a reason to double the load on Prometheus.
    """
    by = promql.SERVICE_LABELS
    raw = functools.partial(measure, client, at=at, window=window, matchers=matchers, on_figures=on_figures)
    if source == "raw":
        return raw(catalogue=catalogue)
    queries = promql.recorded_figure_queries(by, window=window, matchers=matchers, catalogue=catalogue)

    def absent(answers: _Answers) -> bool:  # `auto` and the recorded request rates answered with no series
        return source == "auto" and answers.vectors.get("requests", None) == {}

    answers = _stream(client, queries, at=at, by=by, on_figures=on_figures, catalogue=catalogue, until=absent)
    if source == "auto":
        _auto_chose(window, "raw" if absent(answers) else "recorded")
        if absent(answers):
            return raw(catalogue=catalogue)
    return _measured(answers, source="recorded", catalogue=catalogue)
