"""PromQL text for every figure the exporter reads: quoting, selectors and grouped queries (pure functions).

No other module writes PromQL. Every query is grouped (`sum by (...)`), so a cycle costs the same
number of requests for 10 services as for 10,000.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from exporter import durations
from exporter.model import CATALOGUE, FigureInfo

REQUESTS = "istio_requests_total"
DURATION_BUCKET = "istio_request_duration_milliseconds_bucket"
SERVICE_LABELS: tuple[str, ...] = ("destination_service_namespace", "destination_service_name")

_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_REGEX_META = re.compile(r"([\\.+*?()|\[\]{}^$])")


def quote(value: str) -> str:
    """A PromQL string literal holding exactly `value` (JSON escapes are valid Go/PromQL escapes)."""
    return json.dumps(value, ensure_ascii=False)


def regex_literal(value: str) -> str:
    """`value` escaped for use inside an RE2 regular expression (fully anchored by PromQL)."""
    return _REGEX_META.sub(r"\\\1", value)


def check_label_name(name: str) -> str:
    if not _LABEL_NAME.match(name):
        raise ValueError(f"not a Prometheus label name: {name!r}")
    return name


@dataclass(frozen=True)
class Matcher:
    """One label matcher; `op` is one of = != =~ !~ and the value is quoted when rendered."""

    label: str
    value: str
    op: str = "="

    def __post_init__(self) -> None:
        check_label_name(self.label)
        if self.op not in ("=", "!=", "=~", "!~"):
            raise ValueError(f"not a PromQL matcher operator: {self.op!r}")

    def __str__(self) -> str:
        return f"{self.label}{self.op}{quote(self.value)}"


@dataclass(frozen=True)
class FigureQuery:
    """A query figures read: the destination-reported request rate (of the requests matching `matchers`),
    or with `quantile` the quantile of their duration; `recorded` names its recording rule's series and
    `about` describes the rates it records (for the rule file's header)."""

    recorded: str
    about: str
    matchers: tuple[Matcher, ...] = ()
    quantile: bool = False


# Query name (as model.CATALOGUE's figures name it) -> the query. Names follow Prometheus's
# level:metric:operations convention and carry the window, so rule groups for several windows coexist.
FIGURE_QUERIES: dict[str, FigureQuery] = {
    "requests": FigureQuery("destination_service:istio_requests:rate{window}", "request"),
    "ok": FigureQuery(
        "destination_service:istio_requests_non_5xx:rate{window}", "non-5xx", (Matcher("response_code", "5..", "!~"),)
    ),
    "mtls": FigureQuery(
        "destination_service:istio_requests_mutual_tls:rate{window}",
        "mutual-TLS",
        (Matcher("connection_security_policy", "mutual_tls"),),
    ),
    "p99": FigureQuery(
        "destination_service_le:istio_request_duration_milliseconds_bucket:rate{window}",
        "duration-bucket",
        quantile=True,
    ),
}


def query_names(catalogue: Mapping[str, FigureInfo] = CATALOGUE) -> tuple[str, ...]:
    """The queries the catalogue's figures read, request totals first (every figure needs them)."""
    return tuple(dict.fromkeys(["requests", *(info.query for info in catalogue.values())]))


def one_of(label: str, values: Sequence[str]) -> Matcher:
    """A matcher for any of `values`, each escaped literally."""
    return Matcher(label, "|".join(regex_literal(v) for v in sorted(values)), "=~")


def selector(metric: str, matchers: Sequence[Matcher]) -> str:
    return f"{metric}{{{','.join(str(m) for m in matchers)}}}"


def _by(labels: Sequence[str]) -> str:
    return ", ".join(check_label_name(label) for label in labels)


def _range(metric: str, matchers: Sequence[Matcher], window: str, offset: str | None) -> str:
    durations.seconds(window)
    text = f"{selector(metric, matchers)}[{window}]"
    if offset is not None:
        durations.seconds(offset)
        text += f" offset {offset}"
    return text


def destination(*matchers: Matcher) -> tuple[Matcher, ...]:
    """Matchers for traffic as the destination's proxy reports it (never `source`, which double counts)."""
    return (Matcher("reporter", "destination"), *matchers)


def rate_sum(
    by: Sequence[str],
    *,
    window: str,
    matchers: Sequence[Matcher] = (),
    offset: str | None = None,
    metric: str = REQUESTS,
) -> str:
    """Requests per second over `window`, summed per group of `by` labels, destination-reported."""
    return f"sum by ({_by(by)}) (rate({_range(metric, destination(*matchers), window, offset)}))"


def count_sum(
    by: Sequence[str],
    *,
    window: str,
    matchers: Sequence[Matcher] = (),
    metric: str = REQUESTS,
) -> str:
    """Events counted in `window` (a counter's increase), summed per group, destination-reported, without
    extrapolation: per series, its last value in the window minus its last value before the window.

    Exact on every backend (Prometheus extrapolates `increase`; VictoriaMetrics' `rate` divides by the
    samples' span, not the window), because only `last_over_time`, `offset`, `-`, `>=` and `or` are used.
    A series born in the window counts from 0 (Istio's counters start at 0); a counter reset in the window
    counts from the reset (a lower bound: requests before the restart are not counted).
    """
    durations.seconds(window)
    series = selector(metric, destination(*matchers))
    end = f"last_over_time({series}[{window}])"
    start = f"last_over_time({series}[{window}] offset {window})"
    return f"sum by ({_by(by)}) ((({end} - {start}) >= 0) or {end})"


def histogram_quantile(q: float, buckets: str) -> str:
    """The q-quantile of a grouped bucket query (by ..., le): rates or counts alike."""
    if not 0 <= q <= 1:
        raise ValueError(f"quantile must be within [0, 1], got {q}")
    return f"histogram_quantile({q:g}, {buckets})"


def quantile(
    q: float,
    by: Sequence[str],
    *,
    window: str,
    matchers: Sequence[Matcher] = (),
    offset: str | None = None,
) -> str:
    """The q-quantile of request duration (ms) per group, from Istio's histogram buckets."""
    buckets = rate_sum((*by, "le"), window=window, matchers=matchers, offset=offset, metric=DURATION_BUCKET)
    return histogram_quantile(q, buckets)


def _rates(
    spec: FigureQuery, by: Sequence[str], *, window: str, matchers: Sequence[Matcher], offset: str | None
) -> str:
    """The rates a figure query reads: of its requests, or of their duration buckets (by `le` too)."""
    labels, metric = ((*by, "le"), DURATION_BUCKET) if spec.quantile else (by, REQUESTS)
    return rate_sum(labels, window=window, matchers=[*matchers, *spec.matchers], offset=offset, metric=metric)


def figure_queries(
    by: Sequence[str] = SERVICE_LABELS,
    *,
    window: str,
    matchers: Sequence[Matcher] = (),
    offset: str | None = None,
    q: float = 0.99,
    catalogue: Mapping[str, FigureInfo] = CATALOGUE,
) -> dict[str, str]:
    """The grouped queries behind the catalogue's figures (by default: all requests, non-5xx, mutual TLS
    and the p99). Ratios are taken by the caller, so that a group whose numerator has no series gets 0,
    not nothing."""
    out = {}
    for name in query_names(catalogue):
        spec = FIGURE_QUERIES[name]
        rates = _rates(spec, by, window=window, matchers=matchers, offset=offset)
        out[name] = histogram_quantile(q, rates) if spec.quantile else rates
    return out


def coverage_queries(
    by: Sequence[str] = SERVICE_LABELS,
    *,
    callers: Sequence[str],
    window: str,
    matchers: Sequence[Matcher] = (),
    offset: str | None = None,
) -> dict[str, str]:
    """mTLS coverage inputs: all requests per `by` group, and plaintext requests (every
    connection_security_policy but mutual_tls) per `by` + `callers` group, so each plaintext caller is named.

    Coverage = 100 × (all − plaintext) / all, the same ratio as `figure_queries`' mutual_tls / all.
    """
    plaintext = [*matchers, Matcher("connection_security_policy", "mutual_tls", "!=")]
    return {
        "requests": rate_sum(by, window=window, matchers=matchers, offset=offset),
        "plaintext": rate_sum((*by, *callers), window=window, matchers=plaintext, offset=offset),
    }


def unverified_query(
    by: Sequence[str] = SERVICE_LABELS,
    *,
    callers: Sequence[str],
    window: str,
    matchers: Sequence[Matcher] = (),
    offset: str | None = None,
) -> str:
    """Requests per second that callers' proxies (`reporter="source"`) send to destinations that report
    no request of their own in the window (no sidecar, or outside the mesh), per `by` + `callers` group.

    Source-side series carry no reliable connection_security_policy, so this traffic is unverified, not
    plaintext. One grouped request; `unless` keeps the answer as small as the set of blind destinations.
    """
    source = (Matcher("reporter", "source"), *matchers)
    sent = f"sum by ({_by((*by, *callers))}) (rate({_range(REQUESTS, source, window, offset)}))"
    return f"{sent} unless on ({_by(by)}) ({rate_sum(by, window=window, matchers=matchers, offset=offset)} > 0)"


def unseen_query(
    flows: Sequence[Sequence[str]],
    by: Sequence[str],
    *,
    window: str,
    matchers: Sequence[Matcher] = (),
) -> str:
    """Requests per second that callers' proxies (`reporter="source"`) send in `flows` (label values in `by`
    order) that the destination's proxy reports no request of, per `by` group: the caller reaches only pods
    without a sidecar. One grouped request; the regex matchers may admit a few pairs beyond `flows`.
    """
    picked = [*matchers, *(one_of(label, sorted({f[i] for f in flows})) for i, label in enumerate(by))]
    sent = f"sum by ({_by(by)}) (rate({_range(REQUESTS, (Matcher('reporter', 'source'), *picked), window, None)}))"
    return f"{sent} unless on ({_by(by)}) ({rate_sum(by, window=window, matchers=picked)} > 0)"


# Recording rules ---------------------------------------------------------------------------------
# The rule group pre-aggregates, per (destination_service_namespace, destination_service_name), the
# very rates `figure_queries` sends raw, so a figure read from the recorded series equals the raw figure
# at the rule's evaluation instant.


def recorded_name(query: str, *, window: str) -> str:
    """The recorded series of a figure query's rates over `window`, e.g. destination_service:istio_requests:rate5m."""
    durations.seconds(window)
    return FIGURE_QUERIES[query].recorded.format(window=window)


def recording_rules(*, window: str, catalogue: Mapping[str, FigureInfo] = CATALOGUE) -> dict[str, str]:
    """Recorded name → expression: the raw figure queries' own rate expressions, per service."""
    return {
        recorded_name(name, window=window): _rates(
            FIGURE_QUERIES[name], SERVICE_LABELS, window=window, matchers=(), offset=None
        )
        for name in query_names(catalogue)
    }


def rule_group(
    *, window: str, interval: str | None = None, catalogue: Mapping[str, FigureInfo] = CATALOGUE
) -> dict[str, object]:
    """One Prometheus rule group (the `groups:` item of a rule file or a PrometheusRule's spec)."""
    group: dict[str, object] = {"name": f"mesh-exporter-{window}"}
    if interval is not None:
        durations.seconds(interval)
        group["interval"] = interval
    rules = recording_rules(window=window, catalogue=catalogue)
    group["rules"] = [{"record": name, "expr": expr} for name, expr in rules.items()]
    return group


def recorded_figure_queries(
    by: Sequence[str] = SERVICE_LABELS,
    *,
    window: str,
    matchers: Sequence[Matcher] = (),
    q: float = 0.99,
    catalogue: Mapping[str, FigureInfo] = CATALOGUE,
) -> dict[str, str]:
    """The queries of `figure_queries`, read from the recorded series instead of raw Istio series.
    `by` must be a subset of SERVICE_LABELS (the recorded series carry nothing else)."""
    if not set(by) <= set(SERVICE_LABELS):
        raise ValueError(f"recorded series carry only {SERVICE_LABELS}, not {tuple(by)}")
    out = {}
    for name in query_names(catalogue):
        spec = FIGURE_QUERIES[name]
        recorded = recorded_name(name, window=window)
        labels = (*by, "le") if spec.quantile else by
        rates = f"sum by ({_by(labels)}) ({selector(recorded, matchers) if matchers else recorded})"
        out[name] = histogram_quantile(q, rates) if spec.quantile else rates
    return out
