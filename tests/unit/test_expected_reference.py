"""The tests' own reference of histogram_quantile, checked on hand-computed cases."""

import math

from tests.support.expected import histogram_quantile


def test_reference_quantile_interpolates_inside_the_bucket() -> None:
    # 100 observations: 50 ≤ 10, 40 in (10, 100], 10 in (100, +Inf)
    cum = [(10.0, 50.0), (100.0, 90.0), (math.inf, 100.0)]
    assert histogram_quantile(0.5, cum) == 10.0
    assert histogram_quantile(0.7, cum) == 10 + 90 * (70 - 50) / 40
    assert histogram_quantile(0.99, cum) == 100.0  # rank falls in +Inf: the highest finite bound
    assert histogram_quantile(0.25, cum) == 5.0  # first bucket starts at 0
    assert math.isnan(histogram_quantile(0.5, [(10.0, 0.0), (math.inf, 0.0)]))
