"""The updated_at window of a read: [start, end), either bound optional.

Recurly's begin_time and end_time are both INCLUSIVE. A daily window is half-open, so the request
asks for end_time = end - 1 microsecond, and `contains` drops anything at or after `end` that a
server with coarser timestamps might still return: the record belongs to the next window.
A backfill over a date range therefore reads each record exactly in the window of its updated_at.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import Any

from recurly_elt.staging.tables import parse_timestamp

_ONE_MICROSECOND = timedelta(microseconds=1)


def to_utc_naive(value: Any) -> datetime | None:
    """A datetime/date/ISO string (any zone) as a naive UTC datetime; None stays None."""
    if value in (None, ""):
        return None
    if isinstance(value, date) and not isinstance(value, datetime):
        return datetime.combine(value, time.min)
    if isinstance(value, datetime) and value.tzinfo is not None:
        return datetime.fromtimestamp(value.timestamp(), tz=timezone.utc).replace(tzinfo=None)
    return parse_timestamp(value)


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class Window:
    start: datetime | None = None   # inclusive, naive UTC
    end: datetime | None = None     # exclusive, naive UTC

    @classmethod
    def of(cls, start: Any = None, end: Any = None) -> "Window":
        window = cls(to_utc_naive(start), to_utc_naive(end))
        if window.start and window.end and window.start >= window.end:
            raise ValueError(f"empty window: start {window.start} is not before end {window.end}")
        return window

    def api_params(self) -> dict[str, str]:
        params = {}
        if self.start is not None:
            params["begin_time"] = _iso(self.start)
        if self.end is not None:
            params["end_time"] = _iso(self.end - _ONE_MICROSECOND)
        return params

    def contains(self, updated_at: datetime | None) -> bool:
        if updated_at is None:
            return True
        return (self.start is None or updated_at >= self.start) and (self.end is None or updated_at < self.end)

    def __str__(self) -> str:
        return f"[{self.start.isoformat() if self.start else '-inf'}, {self.end.isoformat() if self.end else '+inf'})"
