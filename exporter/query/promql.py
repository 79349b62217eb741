"""PromQL text for every figure the exporter reads: quoting, selectors and grouped queries (pure functions).

No other module writes PromQL. Every query is grouped (`sum by (...)`), so a cycle costs the same
number of requests for 10 services as for 10,000.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass

from exporter import durations

REQUESTS = "istio_requests_total"
DURATION_BUCKET = "istio_request_duration_milliseconds_bucket"
SERVICE_LABELS: tuple[str, ...] = ("destination_service_namespace", "destination_service_name")
FIGURE_QUERIES: tuple[str, ...] = ("requests", "ok", "mtls", "p99")

duration_seconds = durations.seconds  # the one duration parser (exporter.durations), under its query-layer name
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


def one_of(label: str, values: Sequence[str]) -> Matcher:
    """A matcher for any of `values`, each escaped literally."""
    return Matcher(label, "|".join(regex_literal(v) for v in sorted(values)), "=~")


def selector(metric: str, matchers: Sequence[Matcher]) -> str:
    return f"{metric}{{{','.join(str(m) for m in matchers)}}}"


def _by(labels: Sequence[str]) -> str:
    return ", ".join(check_label_name(label) for label in labels)


def _range(metric: str, matchers: Sequence[Matcher], window: str, offset: str | None) -> str:
    duration_seconds(window)
    text = f"{selector(metric, matchers)}[{window}]"
    if offset is not None:
        duration_seconds(offset)
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
    duration_seconds(window)
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
    return histogram_quantile(q, bucket_rates(by, window=window, matchers=matchers, offset=offset))


def bucket_rates(by: Sequence[str], *, window: str, matchers: Sequence[Matcher] = (), offset: str | None = None) -> str:
    """Per-`le` bucket rates of request duration per group: what `quantile` takes the quantile of."""
    return rate_sum((*by, "le"), window=window, matchers=matchers, offset=offset, metric=DURATION_BUCKET)


def figure_queries(
    by: Sequence[str] = SERVICE_LABELS,
    *,
    window: str,
    matchers: Sequence[Matcher] = (),
    offset: str | None = None,
    q: float = 0.99,
) -> dict[str, str]:
    """The four grouped queries behind every figure: all requests, non-5xx, mutual TLS, and the p99.

    Ratios are taken by the caller, so that a group whose numerator has no series gets 0, not nothing.
    """
    return {
        "requests": rate_sum(by, window=window, matchers=matchers, offset=offset),
        "ok": rate_sum(by, window=window, matchers=[*matchers, Matcher("response_code", "5..", "!~")], offset=offset),
        "mtls": rate_sum(
            by, window=window, matchers=[*matchers, Matcher("connection_security_policy", "mutual_tls")], offset=offset
        ),
        "p99": quantile(q, by, window=window, matchers=matchers, offset=offset),
    }


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


# Recording rules ---------------------------------------------------------------------------------
# The rule group pre-aggregates, per (destination_service_namespace, destination_service_name), the
# very expressions `figure_queries` sends raw, so a figure read from the recorded series equals the raw
# figure at the rule's evaluation instant. Names follow Prometheus's level:metric:operations convention
# and carry the window, so groups for several windows can coexist.

RECORDED_RATES: tuple[str, ...] = ("requests", "ok", "mtls", "buckets")
_RECORDED_METRIC = {
    "requests": "destination_service:istio_requests:rate{window}",
    "ok": "destination_service:istio_requests_non_5xx:rate{window}",
    "mtls": "destination_service:istio_requests_mutual_tls:rate{window}",
    "buckets": "destination_service_le:istio_request_duration_milliseconds_bucket:rate{window}",
}


def recorded_name(rate: str, *, window: str) -> str:
    """The recorded series of `rate` (one of RECORDED_RATES) over `window`, e.g.
    destination_service:istio_requests:rate5m."""
    duration_seconds(window)
    return _RECORDED_METRIC[rate].format(window=window)


def recording_rules(*, window: str) -> dict[str, str]:
    """Recorded name → expression: the raw figure queries' own rate expressions, per service."""
    raw = figure_queries(SERVICE_LABELS, window=window)
    exprs = {
        "requests": raw["requests"],
        "ok": raw["ok"],
        "mtls": raw["mtls"],
        "buckets": bucket_rates(SERVICE_LABELS, window=window),
    }
    return {recorded_name(rate, window=window): exprs[rate] for rate in RECORDED_RATES}


def rule_group(*, window: str, interval: str | None = None) -> dict[str, object]:
    """One Prometheus rule group (the `groups:` item of a rule file or a PrometheusRule's spec)."""
    group: dict[str, object] = {"name": f"mesh-exporter-{window}"}
    if interval is not None:
        duration_seconds(interval)
        group["interval"] = interval
    group["rules"] = [{"record": name, "expr": expr} for name, expr in recording_rules(window=window).items()]
    return group


def recorded_figure_queries(
    by: Sequence[str] = SERVICE_LABELS, *, window: str, matchers: Sequence[Matcher] = (), q: float = 0.99
) -> dict[str, str]:
    """The four figure queries of `figure_queries`, read from the recorded series instead of raw Istio
    series. `by` must be a subset of SERVICE_LABELS (the recorded series carry nothing else)."""
    if not set(by) <= set(SERVICE_LABELS):
        raise ValueError(f"recorded series carry only {SERVICE_LABELS}, not {tuple(by)}")

    def summed(rate: str, labels: Sequence[str]) -> str:
        name = recorded_name(rate, window=window)
        return f"sum by ({_by(labels)}) ({selector(name, matchers) if matchers else name})"

    return {
        "requests": summed("requests", by),
        "ok": summed("ok", by),
        "mtls": summed("mtls", by),
        "p99": histogram_quantile(q, summed("buckets", (*by, "le"))),
    }
