"""Simulation time: integer epoch seconds inside, ISO-8601 UTC strings ("...Z") on the objects.

The simulation handles millions of timestamps, so formatting avoids datetime objects on the hot
path: the date part of a day is formatted once and cached, the time of day is plain arithmetic.
"""

from __future__ import annotations

import calendar
from datetime import UTC, date, datetime, timedelta

DAY = 86_400
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_day_prefix: dict[int, str] = {}


def date_to_ts(day: date) -> int:
    """Midnight UTC of `day` as epoch seconds."""
    return (day - date(1970, 1, 1)).days * DAY


def ts_to_datetime(ts: int) -> datetime:
    return _EPOCH + timedelta(seconds=ts)


def iso(ts: int) -> str:
    """Epoch seconds -> "YYYY-MM-DDTHH:MM:SSZ"."""
    day, sec = divmod(ts, DAY)
    prefix = _day_prefix.get(day)
    if prefix is None:
        prefix = _day_prefix[day] = (_EPOCH + timedelta(days=day)).strftime("%Y-%m-%dT")
    hours, rest = divmod(sec, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{prefix}{hours:02d}:{minutes:02d}:{seconds:02d}Z"


def add_months(ts: int, months: int) -> int:
    """`ts` moved by whole calendar months, the day clamped to the target month's length.

    Billing periods are always computed from the subscription's anchor (anchor + k months), never
    from the previous period end, so a period starting on the 31st does not drift to the 28th.
    """
    dt = ts_to_datetime(ts)
    year, month0 = divmod(dt.month - 1 + months, 12)
    year += dt.year
    day = min(dt.day, calendar.monthrange(year, month0 + 1)[1])
    return date_to_ts(date(year, month0 + 1, day)) + ts % DAY


def year_month(ts: int) -> tuple[int, int]:
    dt = ts_to_datetime(ts)
    return dt.year, dt.month
