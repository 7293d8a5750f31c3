"""Sandbox time, in one place: integers inside, ISO-8601 UTC strings ("...Z") on the API objects.

The generator counts in epoch seconds (`iso`, `date_to_ts`, `add_months`); the server compares and
sorts in epoch microseconds (`to_micros`, `from_micros`), exact for the fractional `begin_time`
and `end_time` a client may send. Both read and write the same "YYYY-MM-DDTHH:MM:SSZ" strings.

The simulation formats millions of timestamps, so `iso` avoids datetime objects on the hot path:
the date part of a day is formatted once and cached, the time of day is plain arithmetic.
"""

from __future__ import annotations

import calendar
from datetime import date, datetime, timedelta, timezone

DAY = 86_400  # seconds
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICRO = timedelta(microseconds=1)
_day_prefix: dict[int, str] = {}


# -- epoch seconds (the generator) ------------------------------------------------------------------
def date_to_ts(day: date) -> int:
    """Midnight UTC of `day` as epoch seconds."""
    return (day - EPOCH.date()).days * DAY


def ts_to_datetime(ts: int) -> datetime:
    return EPOCH + timedelta(seconds=ts)


def iso(ts: int) -> str:
    """Epoch seconds -> "YYYY-MM-DDTHH:MM:SSZ"."""
    day, sec = divmod(ts, DAY)
    prefix = _day_prefix.get(day)
    if prefix is None:
        prefix = _day_prefix[day] = (EPOCH + timedelta(days=day)).strftime("%Y-%m-%dT")
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


# -- epoch microseconds (the server) ----------------------------------------------------------------
def to_micros(value: str | datetime) -> int:
    """Parse ISO-8601 (a value without a zone is UTC, as Recurly reads begin_time/end_time).

    Raises ValueError for anything that is not an ISO-8601 date or date-time.
    """
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(value.strip())
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return (moment - EPOCH) // _MICRO


def from_micros(micros: int) -> str:
    """ISO-8601 UTC with a Z, to the second when there are no fractions (as Recurly writes them)."""
    moment = EPOCH + timedelta(microseconds=micros)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    return text + (f".{moment.microsecond:06d}Z" if moment.microsecond else "Z")
