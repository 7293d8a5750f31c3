"""ISO-8601 timestamps as integer microseconds since the epoch: exact, cheap to compare and sort."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICRO = timedelta(microseconds=1)


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
