"""Canary analysis, table-driven: the statistics against textbook and hand-computed values, then verdicts."""

from __future__ import annotations

import math
from itertools import pairwise

import pytest

from exporter.canary.analysis import (
    FAIL,
    INCONCLUSIVE,
    PASS,
    Subset,
    Thresholds,
    analyze,
    bin_counts,
    binomial_sf,
    count_above,
    fisher_greater,
    mann_whitney_greater,
    normal_sf,
)

INF = math.inf


def cumulative(per_bucket: dict[float, int]) -> tuple[tuple[float, float], ...]:
    """Istio-style cumulative buckets from requests per bucket."""
    out, acc = [], 0.0
    for le in sorted(per_bucket):
        acc += per_bucket[le]
        out.append((le, acc))
    return tuple(out)


# ---------------------------------------------------------------------------------------- statistics
@pytest.mark.parametrize(
    ("z", "expected"),
    [(0.0, 0.5), (1.959963984540054, 0.025), (1.6448536269514722, 0.05), (-1.6448536269514722, 0.95)],
)
def test_normal_sf_matches_the_table(z: float, expected: float) -> None:
    assert normal_sf(z) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize(
    ("k", "n", "p", "expected"),
    [
        (3, 10, 0.1, 1 - (0.9**10 + 10 * 0.1 * 0.9**9 + 45 * 0.01 * 0.9**8)),  # 0.0701908264
        (6, 10, 0.5, 386 / 1024),  # C(10,6..10) = 210+120+45+10+1, above the mode
        (5, 10, 0.5, 638 / 1024),  # 252 more, at the mode (summed from the other side)
        (1, 1000, 0.001, 1 - 0.999**1000),  # at least one: 0.632
        (0, 50, 0.3, 1.0),
        (1, 1000, 0.0, 0.0),  # nothing allowed, one seen
        (11, 10, 0.5, 0.0),
    ],
)
def test_binomial_upper_tail(k: int, n: int, p: float, expected: float) -> None:
    assert binomial_sf(k, n, p) == pytest.approx(expected, rel=1e-9, abs=1e-15)


def test_binomial_upper_tail_at_large_counts_is_exact_against_summed_integers() -> None:
    # P(X >= 30; 10000, 0.002): mean 20; exact rational sum with integer arithmetic
    n, k = 10000, 30
    num = sum(math.comb(n, j) * 2**j * 998 ** (n - j) for j in range(k))
    expected = 1 - num / 1000**n
    assert binomial_sf(k, n, 0.002) == pytest.approx(expected, rel=1e-9)


def _fisher_brute_force(a: int, b: int, c: int, d: int) -> float:
    row, col, total = a + b, a + c, a + b + c + d
    return sum(math.comb(col, j) * math.comb(total - col, row - j) for j in range(a, min(row, col) + 1)) / math.comb(
        total, row
    )


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        ((3, 1, 1, 3), 17 / 70),  # Fisher's lady tasting tea, one-sided: 0.2429
        ((1, 3, 3, 1), 69 / 70),
        ((11, 3, 1, 9), 2706 / 1961256),  # (12·220 + 66) / C(24, 14) = 0.00138
        ((0, 100, 0, 900), 1.0),  # no errors anywhere
        ((5, 995, 45, 8955), None),  # equal shares (0.5 %): p near one half
        ((30, 970, 9, 8991), None),  # 3 % against 0.1 %: tiny
    ],
)
def test_fisher_exact_one_sided(table: tuple[int, int, int, int], expected: float | None) -> None:
    want = _fisher_brute_force(*table) if expected is None else expected
    assert fisher_greater(*table) == pytest.approx(want, rel=1e-9, abs=1e-300)


def test_mann_whitney_on_binned_data_hand_computed() -> None:
    # canary 1,2,3 and stable 3,2,1 requests in three ordered buckets:
    # U = 1·(0 + 3/2) + 2·(3 + 2/2) + 3·(5 + 1/2) = 26; E[U] = 6·6/2 = 18
    # ties: three groups of 4 → Σ(t³ − t) = 180; Var = 36/12 · (13 − 180/132) = 34.909
    # z = (26 − 18 − 0.5) / 5.90839 = 1.26938 → one-sided p = 0.10215
    test = mann_whitney_greater([1, 2, 3], [3, 2, 1])
    assert test.statistic == 26
    assert test.p_value == pytest.approx(0.10215, abs=5e-5)


def test_mann_whitney_u_and_variance_agree_with_ranks_of_the_expanded_samples() -> None:
    canary, stable = [0, 4, 10, 6, 1], [7, 12, 5, 1, 0]
    xs = [(i, "c") for i, n in enumerate(canary) for _ in range(n)] + [
        (i, "s") for i, n in enumerate(stable) for _ in range(n)
    ]
    # U by counting pairs, variance from midranks (the exact permutation variance with ties)
    u = sum((x > y) + 0.5 * (x == y) for x, p in xs if p == "c" for y, q in xs if q == "s")
    ordered = sorted(v for v, _ in xs)
    midrank = {v: (ordered.index(v) + 1 + len(ordered) - ordered[::-1].index(v)) / 2 for v in set(ordered)}
    n1, n2, n = sum(canary), sum(stable), len(xs)
    var = n1 * n2 / (n * (n - 1)) * sum((midrank[v] - (n + 1) / 2) ** 2 for v, _ in xs)
    test = mann_whitney_greater(canary, stable)
    assert test.statistic == pytest.approx(u)
    assert test.p_value == pytest.approx(normal_sf((u - n1 * n2 / 2 - 0.5) / math.sqrt(var)), rel=1e-9)
    assert test.p_value < 1e-3  # canary is clearly slower
    assert mann_whitney_greater(stable, canary).p_value > 0.999  # and stable is not


def test_mann_whitney_degenerate_inputs_prove_nothing() -> None:
    assert mann_whitney_greater([0, 5, 0], [0, 7, 0]).p_value == 1.0  # all in one bucket
    assert mann_whitney_greater([0, 0], [3, 4]).p_value == 1.0  # no canary requests


@pytest.mark.parametrize(
    ("threshold", "expected"),
    [
        (200.0, 4.0),  # 90 ≤ 100 ms; 9 in (100, 250]: 2/3 of them ≤ 200 → 96 → 4 slower
        (100.0, 10.0),
        (250.0, 1.0),  # the +Inf request is slower than any bound
        (50.0, 55.0),  # first bucket from 0: 90 · 50/100 = 45 → 55 slower
        (5000.0, 1.0),
    ],
)
def test_count_above_interpolates_like_histogram_quantile(threshold: float, expected: float) -> None:
    buckets = ((100.0, 90.0), (250.0, 99.0), (INF, 100.0))
    assert count_above(buckets, threshold) == pytest.approx(expected)


def test_bin_counts_align_histograms_with_missing_bounds() -> None:
    bounds = [10.0, 25.0, 50.0, INF]
    assert bin_counts(((10.0, 3.0), (50.0, 8.0), (INF, 9.0)), bounds) == [3.0, 0.0, 5.0, 1.0]
    assert [b - a for a, b in pairwise([0, 3, 3, 8, 9])] == [3, 0, 5, 1]


# ------------------------------------------------------------------------------------------- verdicts
TYPICAL = {25.0: 6000, 50.0: 3000, 100.0: 950, 250.0: 50, INF: 0}  # per 10,000 requests; p99 ≈ 100 ms
SLOW = {25.0: 1000, 50.0: 2000, 100.0: 3000, 250.0: 2500, 500.0: 1400, INF: 100}


def scaled(per_bucket: dict[float, int], factor: float) -> dict[float, int]:
    return {le: round(n * factor) for le, n in per_bucket.items()}


def subset(requests: int, errors: int, p99: float | None, per_bucket: dict[float, int] | None) -> Subset:
    return Subset(requests, errors, p99, cumulative(per_bucket) if per_bucket else ())


CASES = {
    "no data at all": (Subset(0, 0), Subset(0, 0), INCONCLUSIVE, {}),
    "stable has traffic, canary none": (Subset(0, 0), subset(9000, 9, 95.0, scaled(TYPICAL, 0.9)), INCONCLUSIVE, {}),
    # 40 of 50 failed, but 50 requests are below the minimum: never judged on so few
    "too few canary requests": (
        subset(50, 40, 95.0, scaled(TYPICAL, 0.005)),
        subset(9000, 9, 95.0, scaled(TYPICAL, 0.9)),
        INCONCLUSIVE,
        {"canary_requests": INCONCLUSIVE, "success_rate": FAIL},
    ),
    "equal to stable": (
        subset(10000, 5, 97.0, TYPICAL),
        subset(90000, 45, 97.0, scaled(TYPICAL, 9)),
        PASS,
        {"success_rate": PASS, "p99_latency": PASS, "error_rate_vs_stable": PASS, "p99_vs_stable": PASS},
    ),
    "clearly more errors": (
        subset(1000, 30, 97.0, scaled(TYPICAL, 0.1)),
        subset(9000, 9, 97.0, scaled(TYPICAL, 0.9)),
        FAIL,
        {"success_rate": FAIL, "error_rate_vs_stable": FAIL, "p99_vs_stable": PASS},
    ),
    # 3 errors in 2,000 (99.85 %): P(X ≥ 3; 2000, 0.001) = 0.32, so below the threshold but maybe noise;
    # 0.15 % against stable's 0.1 % is not significant either
    "marginally below the success threshold": (
        subset(2000, 3, 97.0, scaled(TYPICAL, 0.2)),
        subset(20000, 20, 97.0, scaled(TYPICAL, 2)),
        INCONCLUSIVE,
        {"success_rate": INCONCLUSIVE, "error_rate_vs_stable": PASS},
    ),
    "clearly slower": (
        subset(10000, 0, 480.0, SLOW),
        subset(90000, 0, 97.0, scaled(TYPICAL, 9)),
        FAIL,
        {"success_rate": PASS, "p99_latency": FAIL, "p99_vs_stable": FAIL},
    ),
    # same histograms, yet the reported p99 is 1.5× stable's: the rank test sees no shift
    "p99 ratio breached without a distribution shift": (
        subset(10000, 0, 150.0, TYPICAL),
        subset(10000, 0, 100.0, TYPICAL),
        INCONCLUSIVE,
        {"p99_latency": PASS, "p99_vs_stable": INCONCLUSIVE},
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_verdicts(name: str) -> None:
    canary, stable, expected, checks = CASES[name]
    verdict = analyze(canary, stable)
    assert verdict.result == expected, verdict.reasons
    by_name = {c.name: c.result for c in verdict.checks}
    for check, result in checks.items():
        assert by_name[check] == result, (check, verdict.checks)
    assert verdict.reasons


def test_every_failure_needs_significance_at_the_configured_confidence() -> None:
    # 2 errors in 1,000 (99.8 %): P(X ≥ 2; 1000, 0.001) = 1 − 0.999^1000 − 1000·0.001·0.999^999 = 0.2642
    canary = subset(1000, 2, 90.0, scaled(TYPICAL, 0.1))
    stable = subset(9000, 9, 90.0, scaled(TYPICAL, 0.9))
    p = 1 - 0.999**1000 - 0.999**999
    check = next(c for c in analyze(canary, stable).checks if c.name == "success_rate")
    assert check.test is not None and check.test.p_value == pytest.approx(p, rel=1e-9)
    assert check.result == INCONCLUSIVE
    lenient = Thresholds(confidence=0.7)  # alpha 0.3 > 0.2642: now significant
    assert next(c for c in analyze(canary, stable, lenient).checks if c.name == "success_rate").result == FAIL


def test_a_100_percent_threshold_fails_on_a_single_error() -> None:
    canary = subset(1000, 1, 90.0, scaled(TYPICAL, 0.1))
    stable = subset(9000, 0, 90.0, scaled(TYPICAL, 0.9))
    assert analyze(canary, stable, Thresholds(min_success_pct=100.0)).result == FAIL


def test_json_carries_figures_thresholds_statistics_and_reasons() -> None:
    canary, stable, _, _ = CASES["clearly more errors"]
    doc = analyze(canary, stable).to_dict()
    assert doc["verdict"] == FAIL
    assert doc["canary"] == {"requests": 1000, "errors": 30, "success_rate_pct": 97.0, "p99_latency_ms": 97.0}
    assert doc["thresholds"]["min_success_pct"] == 99.9
    fisher = next(c for c in doc["checks"] if c["name"] == "error_rate_vs_stable")
    assert fisher["test"]["name"] == "fisher_exact"
    assert fisher["test"]["p_value"] == pytest.approx(_fisher_brute_force(30, 970, 9, 8991), rel=1e-9)


@pytest.mark.parametrize(
    "kwargs",
    [{"confidence": 1.0}, {"confidence": 0.0}, {"min_success_pct": 101}, {"max_p99_ms": 0}, {"min_requests": 0}],
)
def test_invalid_thresholds_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Thresholds(**kwargs)  # type: ignore[arg-type]
