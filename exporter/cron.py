"""Cron expressions as cron means them, for APScheduler.

APScheduler 3's `CronTrigger.from_crontab` numbers weekdays from Monday = 0, so a standard
`0 6 * * 1` (Monday) would fire on Tuesdays. Numeric day-of-week values are translated here to
names (0 and 7 = Sunday, 1 = Monday, …) before APScheduler sees them.
"""

from __future__ import annotations

import re

from apscheduler.triggers.cron import CronTrigger

_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat", "sun")
_NUMBERS = re.compile(r"^(\d)(?:-(\d))?$")


def _day_of_week(field: str) -> str:
    items = []
    for item in field.split(","):
        match = _NUMBERS.match(item)
        if match is None:
            if "/" in item:  # cron counts steps from Sunday, APScheduler from Monday
                raise ValueError(f"day-of-week steps are ambiguous: {item!r}; list the days, e.g. sun,tue,thu,sat")
            items.append(item)  # *, names and name ranges mean the same in both conventions
            continue
        first, last = int(match.group(1)), int(match.group(2) or match.group(1))
        if first > 7 or last > 7 or first > last:
            raise ValueError(f"not a day-of-week (0-7, 0 and 7 = Sunday): {item!r}")
        items += [_DAYS[day] for day in range(first, last + 1)]
    return ",".join(dict.fromkeys(items))


def cron_trigger(expression: str) -> CronTrigger:
    """A UTC CronTrigger for a five-field cron expression; ValueError when it is not one."""
    fields = expression.split()
    if len(fields) != 5:
        raise ValueError(f"a cron expression has 5 fields (minute hour day month weekday), got {expression!r}")
    minute, hour, day, month, weekday = fields
    return CronTrigger(
        minute=minute, hour=hour, day=day, month=month, day_of_week=_day_of_week(weekday), timezone="UTC"
    )
