"""Cron expressions keep cron's weekday numbering (0 and 7 = Sunday) under APScheduler."""

from datetime import UTC, datetime

import pytest

from exporter.cron import cron_trigger

THURSDAY = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def next_fire(expression: str) -> datetime:
    fire = cron_trigger(expression).get_next_fire_time(None, THURSDAY)
    assert fire is not None
    return fire


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("0 6 * * 1", datetime(2026, 11, 30, 6, 0, tzinfo=UTC)),  # Monday, not Tuesday
        ("0 6 * * mon", datetime(2026, 11, 30, 6, 0, tzinfo=UTC)),
        ("0 6 * * 0", datetime(2026, 11, 29, 6, 0, tzinfo=UTC)),  # Sunday
        ("0 6 * * 7", datetime(2026, 11, 29, 6, 0, tzinfo=UTC)),  # Sunday too
        ("30 13 * * 1-5", datetime(2026, 11, 26, 13, 30, tzinfo=UTC)),  # weekdays: today, Thursday
        ("0 6 * * 0,6", datetime(2026, 11, 28, 6, 0, tzinfo=UTC)),  # Saturday first
        ("0 6 * * *", datetime(2026, 11, 27, 6, 0, tzinfo=UTC)),
    ],
)
def test_weekdays_follow_cron(expression: str, expected: datetime) -> None:
    assert next_fire(expression) == expected


@pytest.mark.parametrize("expression", ["0 6 * *", "0 6 * * 8", "0 6 * * 5-1", "0 6 * * */2", "61 * * * *"])
def test_invalid_expressions_are_refused(expression: str) -> None:
    with pytest.raises(ValueError):
        cron_trigger(expression)
