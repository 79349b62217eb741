"""The benchmark's statistics, baseline extrapolation, target judgement and mesh trimming (pure logic)."""

from __future__ import annotations

import copy
import math

import pytest

from bench import mesh, report
from bench.stats import extrapolate, ratio, summarize
from sandbox.meshsim import scaled_mesh


def test_summary_is_the_median_and_the_range_of_the_runs() -> None:
    odd = summarize([0.9, 0.3, 0.5, 0.4, 2.0])
    assert (odd.median, odd.low, odd.high, odd.runs) == (0.5, 0.3, 2.0, 5)
    assert summarize([4.0, 1.0, 3.0, 2.0]).median == 2.5  # even count: mean of the two middle values


@pytest.mark.parametrize("values", [[], [1.0, math.nan], [math.inf]])
def test_summary_refuses_no_runs_or_non_finite_values(values: list[float]) -> None:
    with pytest.raises(ValueError):
        summarize(values)


def test_ratio_is_none_when_it_means_nothing() -> None:
    assert ratio(3.0, 2.0) == 1.5
    assert ratio(None, 2.0) is None
    assert ratio(1.0, 0.0) is None
    assert ratio(1.0, None) is None


def test_extrapolation_is_linear_in_the_services_left() -> None:
    assert extrapolate(30.0, done=1_200, total=10_000) == pytest.approx(250.0)
    assert extrapolate(2.0, done=527, total=527) == 2.0
    with pytest.raises(ValueError):
        extrapolate(1.0, done=0, total=10)


def test_bench_mesh_keeps_only_the_rate_window_and_a_margin() -> None:
    (phase,) = mesh.phases(50, end=10_000.0, span=420.0, seed=3)
    assert phase.start == 10_000.0 - 420.0
    assert phase.services == scaled_mesh(50, now=10_000.0, seed=3)[0].services
    assert mesh.cache_key(50) == mesh.cache_key(50)
    assert len({mesh.cache_key(50), mesh.cache_key(51), mesh.cache_key(50, step=15.0), mesh.cache_key(50, seed=1)}) == 4


def _entry(wall: float, **extra: object) -> dict[str, object]:
    return {"wall": {"median": wall, "low": wall, "high": wall, "runs": 5}, **extra}


def _size(n: int, *, floor: float, warm: float, cold: float, baseline: float, done: int) -> dict[str, object]:
    network = {
        "floor": _entry(floor),
        "warm": _entry(
            warm,
            promql_requests=4,
            peak_rss_mb=90.0,
            datadog_requests=3,
            datadog_decoded_bytes=7.2e6,
            paired_floor={"median": floor},
            cpu={"median": 0.4},
        ),
        "cold": _entry(cold, peak_rss_mb={"median": 95.0}),
        "baseline": _entry(baseline, services_done=done, extrapolated=done < n),
    }
    return {"services": n, "loopback": network, "delayed": copy.deepcopy(network)}


def test_targets_are_judged_from_the_measured_medians() -> None:
    results = {
        "sizes": [
            _size(527, floor=0.2, warm=0.29, cold=1.1, baseline=3.0, done=527),
            _size(10_000, floor=8.0, warm=9.0, cold=8.9, baseline=400.0, done=750),
        ]
    }
    judged = {name: met for name, met, _ in report.targets(results)}
    assert judged["warm cycle ≤ 1.5 × floor at every size"]  # worst 0.29 / 0.2 = 1.45
    assert judged["cold `exporter once` ≤ floor + 1 s"]  # worst 1.1 - 0.2 = 0.9 s (10,000: 0.9 s)
    assert judged["527 services with delays: warm ≥ 10 × faster than the baseline"]  # 3.0 / 0.29 = 10.3
    assert judged["10,000 (loopback): warm cycle < 10 s"]
    assert judged["10,000 (loopback): the baseline cannot keep a 30 s interval, the exporter can"]
    assert judged["10,000: peak RSS < 200 MB"]
    assert judged["10,000: as many PromQL requests per cycle as at 527"]
    # 7.2 MB / 5 MB a request: 2, and one more for the second hand-over
    assert judged["10,000: Datadog requests only as many as the payload limit and the two hand-overs need"]
    assert judged["10,000: warm cycle ≤ 1.15 × floor (median of alternating runs)"]  # 9.0 / 8.0 = 1.125
    assert judged["10,000: exporter CPU per warm cycle ≤ 0.5 s"]
    assert not judged["527: cold `exporter once` ≤ floor + 0.35 s"]  # 1.1 - 0.2 = 0.9 s

    results["sizes"][0]["delayed"]["warm"]["wall"]["median"] = 0.31  # 1.55 × the floor, 9.7 × under the baseline
    results["sizes"][1]["loopback"]["warm"]["datadog_requests"] = 4
    results["sizes"][1]["delayed"]["warm"]["wall"]["median"] = 9.3  # 1.16 × its alternating floor runs
    results["sizes"][1]["delayed"]["warm"]["cpu"]["median"] = 0.51
    judged = {name: met for name, met, _ in report.targets(results)}
    assert not judged["10,000: warm cycle ≤ 1.15 × floor (median of alternating runs)"]
    assert not judged["10,000: exporter CPU per warm cycle ≤ 0.5 s"]
    assert not judged["warm cycle ≤ 1.5 × floor at every size"]
    assert not judged["527 services with delays: warm ≥ 10 × faster than the baseline"]
    assert not judged["10,000: Datadog requests only as many as the payload limit and the two hand-overs need"]
