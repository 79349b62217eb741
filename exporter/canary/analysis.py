"""Canary analysis as a pure function: request counts and latency histograms of two subsets in, a verdict out.

Every check compares a point estimate with a threshold, and a breach only fails the canary when a
significance test at the configured confidence confirms it; a breach the test cannot confirm is
`inconclusive` (it may be noise), never a pass. Decisions rest on request-level counts:

- success rate ≥ threshold: an exact one-sided binomial test of the canary's 5xx count against the
  allowed error share (e.g. 0.1 %). Exact, because canaries live where errors are few.
- p99 ≤ threshold: "p99 ≤ T" means "at most 1 % of requests slower than T"; the number slower than T
  is read from the histogram with histogram_quantile's linear interpolation, then tested like errors.
- error rate vs stable: Fisher's exact test, one-sided (canary error share greater than stable's), on
  the 2×2 table of 5xx/other counts. Exact at any count, unlike the two-proportion z-test, whose
  normal approximation fails precisely when errors number a handful. Not significant passes.
- p99 vs stable (canary p99 ≤ ratio × stable p99): a breach is confirmed by a one-sided Mann–Whitney U
  test over the two histograms' bucket counts (each bucket a group of ties, tie-corrected variance,
  continuity correction). A rank test uses the whole distribution, needs no distributional shape, and
  ties are exactly what bucketed data is made of; a chi-square or KS test on buckets would flag any
  difference in shape, including a canary that is faster.

Too few requests in either subset (or none at all) makes the verdict inconclusive whatever the checks
say: no data is never a failure and never a pass. Tests of several checks are not corrected for
multiple comparisons; the rollout's consecutive-failure limit absorbs the occasional false alarm.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

PASS, FAIL, INCONCLUSIVE = "pass", "fail", "inconclusive"

Buckets = tuple[tuple[float, float], ...]
"""Cumulative histogram: (le, count of requests ≤ le), by increasing le, the last one +Inf."""


@dataclass(frozen=True)
class Subset:
    """One subset's traffic in the window: requests, 5xx answers, p99 (ms) and duration histogram."""

    requests: int
    errors: int
    p99_ms: float | None = None
    buckets: Buckets = ()

    @property
    def success_rate_pct(self) -> float | None:
        return None if self.requests <= 0 else 100.0 * (self.requests - self.errors) / self.requests

    @property
    def error_rate_pct(self) -> float | None:
        return None if self.requests <= 0 else 100.0 * self.errors / self.requests


@dataclass(frozen=True)
class Thresholds:
    min_success_pct: float = 99.9
    max_p99_ms: float = 200.0
    max_p99_ratio: float = 1.2
    """Canary p99 may be at most this factor above stable's."""
    confidence: float = 0.95
    min_requests: int = 100
    """Requests each subset needs in the window before any verdict but inconclusive."""

    def __post_init__(self) -> None:
        if not 0 < self.confidence < 1:
            raise ValueError(f"confidence must be within (0, 1), got {self.confidence}")
        if not 0 <= self.min_success_pct <= 100:
            raise ValueError(f"success threshold must be within [0, 100], got {self.min_success_pct}")
        if self.max_p99_ms <= 0 or self.max_p99_ratio <= 0:
            raise ValueError("p99 thresholds must be > 0")
        if self.min_requests < 1:
            raise ValueError(f"minimum requests must be >= 1, got {self.min_requests}")


@dataclass(frozen=True)
class Test:
    name: str
    statistic: float
    p_value: float


@dataclass(frozen=True)
class Check:
    name: str
    result: str
    observed: float | None
    threshold: float | None
    reason: str
    test: Test | None = None


@dataclass(frozen=True)
class Verdict:
    result: str
    reasons: tuple[str, ...]
    checks: tuple[Check, ...]
    canary: Subset
    stable: Subset
    thresholds: Thresholds = field(default_factory=Thresholds)

    def to_dict(self) -> dict[str, Any]:
        def subset(s: Subset) -> dict[str, Any]:
            return {
                "requests": s.requests,
                "errors": s.errors,
                "success_rate_pct": s.success_rate_pct,
                "p99_latency_ms": s.p99_ms,
            }

        return {
            "verdict": self.result,
            "reasons": list(self.reasons),
            "canary": subset(self.canary),
            "stable": subset(self.stable),
            "thresholds": asdict(self.thresholds),
            "checks": [asdict(c) for c in self.checks],
        }


# ------------------------------------------------------------------------------------------ statistics
def normal_sf(z: float) -> float:
    """P(Z > z) for a standard normal Z."""
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def _tail_sum(logpmf: Callable[[int], float], start: int, stop: int, step: int) -> float:
    """Sum of pmf from `start` towards `stop` (inclusive), away from the mode: terms only decrease."""
    total = 0.0
    for k in range(start, stop + step, step):
        term = math.exp(logpmf(k))
        total += term
        if term <= total * 1e-17:
            break
    return total


def _upper_tail(logpmf: Callable[[int], float], k: int, *, lo: int, hi: int, mode: int) -> float:
    """P(X ≥ k) for a unimodal distribution on [lo, hi] whose pmf peaks at `mode`."""
    if k <= lo:
        return 1.0
    if k > hi:
        return 0.0
    if k > mode:
        return min(1.0, _tail_sum(logpmf, k, hi, 1))
    return max(0.0, 1.0 - _tail_sum(logpmf, k - 1, lo, -1))


def _log_choose(n: int, k: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


def binomial_sf(k: int, n: int, p: float) -> float:
    """P(X ≥ k) for X ~ Binomial(n, p), exact."""
    if k <= 0:
        return 1.0
    if p <= 0.0 or k > n:
        return 0.0
    if p >= 1.0:
        return 1.0
    lp, lq = math.log(p), math.log1p(-p)
    return _upper_tail(lambda j: _log_choose(n, j) + j * lp + (n - j) * lq, k, lo=0, hi=n, mode=math.floor((n + 1) * p))


def fisher_greater(a: int, b: int, c: int, d: int) -> float:
    """One-sided Fisher exact test of the table [[a, b], [c, d]]: P(A ≥ a) with the margins fixed.

    Rows are canary and stable, columns errors and other answers: a small value means the canary's
    error share is significantly greater than stable's.
    """
    row, col, total = a + b, a + c, a + b + c + d
    lo, hi = max(0, row + col - total), min(row, col)
    base = _log_choose(total, row)
    mode = math.floor((row + 1) * (col + 1) / (total + 2))
    return _upper_tail(
        lambda j: _log_choose(col, j) + _log_choose(total - col, row - j) - base, a, lo=lo, hi=hi, mode=mode
    )


def bin_counts(buckets: Buckets, bounds: Sequence[float]) -> list[float]:
    """Requests per bin (between consecutive `bounds`) of a cumulative histogram; a bound it lacks
    takes the cumulative count of the nearest lower bound it has."""
    cumulative = dict(buckets)
    out, previous, carried = [], 0.0, 0.0
    for le in bounds:
        carried = cumulative.get(le, carried)
        out.append(max(0.0, carried - previous))
        previous = max(previous, carried)
    return out


def mann_whitney_greater(canary: Sequence[float], stable: Sequence[float]) -> Test:
    """One-sided Mann–Whitney U on binned samples (counts per ordered bin): is canary stochastically larger?

    U counts the (canary, stable) pairs where canary is slower, ties counting one half. Normal
    approximation with the tie-corrected variance and a continuity correction of 0.5.
    """
    n1, n2 = sum(canary), sum(stable)
    below, u, ties = 0.0, 0.0, 0.0
    for c, s in zip(canary, stable, strict=True):
        u += c * (below + s / 2.0)
        below += s
        t = c + s
        ties += t**3 - t
    n = n1 + n2
    if n1 <= 0 or n2 <= 0 or n < 2:
        return Test("mann_whitney_u", u, 1.0)
    variance = n1 * n2 / 12.0 * ((n + 1) - ties / (n * (n - 1)))
    if variance <= 0:  # every request in one bin: the distributions cannot be told apart
        return Test("mann_whitney_u", u, 1.0)
    z = (u - n1 * n2 / 2.0 - 0.5) / math.sqrt(variance)
    return Test("mann_whitney_u", u, normal_sf(z))


def count_above(buckets: Buckets, threshold: float) -> float:
    """Requests slower than `threshold` ms, interpolated linearly inside its bucket as histogram_quantile does.

    Beyond the highest finite bound nothing more is known: requests in +Inf count as slower.
    """
    if not buckets:
        return 0.0
    total = buckets[-1][1]
    lower, below = 0.0, 0.0
    for le, cumulative in buckets:
        if math.isinf(le):
            return total - below
        if threshold <= le:
            inside = (cumulative - below) * (threshold - lower) / (le - lower) if le > lower else 0.0
            return total - (below + inside)
        lower, below = le, cumulative
    return total - below


# -------------------------------------------------------------------------------------------- analysis
def _pct(x: float | None) -> str:
    return "—" if x is None else f"{x:.3f} %"


def _p(p: float) -> str:
    return "p<1e-300" if p <= 0 else f"p={p:.2g}"


def _traffic(name: str, subset: Subset, t: Thresholds) -> Check:
    ok = subset.requests >= t.min_requests
    reason = f"{name} served {subset.requests} requests in the window" + (
        "" if ok else f", fewer than the {t.min_requests} needed for a verdict"
    )
    return Check(f"{name}_requests", PASS if ok else INCONCLUSIVE, subset.requests, t.min_requests, reason)


def _success(canary: Subset, t: Thresholds, alpha: float) -> Check:
    observed = canary.success_rate_pct
    name = "success_rate"
    if observed is None:
        return Check(name, INCONCLUSIVE, None, t.min_success_pct, "canary has no requests")
    if observed >= t.min_success_pct:
        return Check(name, PASS, observed, t.min_success_pct, f"canary success {_pct(observed)} meets the threshold")
    allowed = 1.0 - t.min_success_pct / 100.0
    test = Test("binomial_exact", canary.errors, binomial_sf(canary.errors, canary.requests, allowed))
    if test.p_value < alpha:
        reason = f"canary success {_pct(observed)} is significantly below {t.min_success_pct:g} %"
        return Check(name, FAIL, observed, t.min_success_pct, f"{reason} ({_p(test.p_value)})", test)
    reason = f"canary success {_pct(observed)} is below {t.min_success_pct:g} % but not significantly"
    return Check(name, INCONCLUSIVE, observed, t.min_success_pct, f"{reason} ({_p(test.p_value)})", test)


def _p99(canary: Subset, t: Thresholds, alpha: float) -> Check:
    name, observed = "p99_latency", canary.p99_ms
    if observed is None or not canary.buckets:
        return Check(name, INCONCLUSIVE, observed, t.max_p99_ms, "canary has no latency histogram")
    if observed <= t.max_p99_ms:
        return Check(name, PASS, observed, t.max_p99_ms, f"canary p99 {observed:.1f} ms is within the threshold")
    slower = round(count_above(canary.buckets, t.max_p99_ms))
    test = Test("binomial_exact", slower, binomial_sf(slower, canary.requests, 0.01))
    verdict = FAIL if test.p_value < alpha else INCONCLUSIVE
    how = "significantly above" if verdict == FAIL else "above, but not significantly,"
    reason = (
        f"canary p99 {observed:.1f} ms is {how} {t.max_p99_ms:g} ms "
        f"({slower} of {canary.requests} requests slower; {_p(test.p_value)})"
    )
    return Check(name, verdict, observed, t.max_p99_ms, reason, test)


def _errors_vs_stable(canary: Subset, stable: Subset, alpha: float) -> Check:
    name = "error_rate_vs_stable"
    if canary.requests <= 0 or stable.requests <= 0:
        return Check(name, INCONCLUSIVE, canary.error_rate_pct, stable.error_rate_pct, "a subset has no requests")
    a, b = canary.errors, canary.requests - canary.errors
    c, d = stable.errors, stable.requests - stable.errors
    test = Test("fisher_exact", a, fisher_greater(a, b, c, d))
    rates = f"canary {_pct(canary.error_rate_pct)} vs stable {_pct(stable.error_rate_pct)} errors"
    if test.p_value < alpha:
        return Check(
            name,
            FAIL,
            canary.error_rate_pct,
            stable.error_rate_pct,
            f"{rates}: significantly higher ({_p(test.p_value)})",
            test,
        )
    return Check(
        name,
        PASS,
        canary.error_rate_pct,
        stable.error_rate_pct,
        f"{rates}: not significantly higher ({_p(test.p_value)})",
        test,
    )


def _p99_vs_stable(canary: Subset, stable: Subset, t: Thresholds, alpha: float) -> Check:
    name = "p99_vs_stable"
    if canary.p99_ms is None or stable.p99_ms is None or stable.p99_ms <= 0 or not canary.buckets or not stable.buckets:
        return Check(name, INCONCLUSIVE, None, t.max_p99_ratio, "no latency histogram for both subsets")
    ratio = canary.p99_ms / stable.p99_ms
    bounds = sorted({le for le, _ in canary.buckets} | {le for le, _ in stable.buckets})
    test = mann_whitney_greater(bin_counts(canary.buckets, bounds), bin_counts(stable.buckets, bounds))
    what = f"canary p99 {canary.p99_ms:.1f} ms is {ratio:.2f}× stable's {stable.p99_ms:.1f} ms"
    if ratio <= t.max_p99_ratio:
        return Check(name, PASS, ratio, t.max_p99_ratio, f"{what}, within {t.max_p99_ratio:g}×", test)
    if test.p_value < alpha:
        reason = f"{what}, above {t.max_p99_ratio:g}×, and significantly slower ({_p(test.p_value)})"
        return Check(name, FAIL, ratio, t.max_p99_ratio, reason, test)
    reason = f"{what}, above {t.max_p99_ratio:g}× but not significantly slower ({_p(test.p_value)})"
    return Check(name, INCONCLUSIVE, ratio, t.max_p99_ratio, reason, test)


def analyze(canary: Subset, stable: Subset, thresholds: Thresholds | None = None) -> Verdict:
    """The verdict on `canary` against `stable` (measured over the same window)."""
    t = thresholds or Thresholds()
    alpha = 1.0 - t.confidence
    traffic = (_traffic("canary", canary, t), _traffic("stable", stable, t))
    checks = (
        *traffic,
        _success(canary, t, alpha),
        _p99(canary, t, alpha),
        _errors_vs_stable(canary, stable, alpha),
        _p99_vs_stable(canary, stable, t, alpha),
    )
    if any(c.result != PASS for c in traffic):
        result = INCONCLUSIVE
        reasons = tuple(c.reason for c in traffic if c.result != PASS)
    elif any(c.result == FAIL for c in checks):
        result = FAIL
        reasons = tuple(c.reason for c in checks if c.result == FAIL)
    elif any(c.result == INCONCLUSIVE for c in checks):
        result = INCONCLUSIVE
        reasons = tuple(c.reason for c in checks if c.result == INCONCLUSIVE)
    else:
        result = PASS
        reasons = ("every check passed",)
    return Verdict(result, reasons, checks, canary, stable, t)
