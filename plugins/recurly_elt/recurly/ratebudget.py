"""A site's API rate budget, paced from the server's own headers.

Readers of one site run in separate processes (mapped Airflow tasks), so no in-process counter can
know what the others spend. The server's `X-RateLimit-Remaining` and `X-RateLimit-Reset` are the
one shared truth: every response tells each reader how much budget is left for everyone and when
it frees. Each reader then:

- keeps `reserve` requests untouched (one per concurrent reader, the Airflow pool's slot count),
  so readers deciding at the same moment on the same stale figure do not overdraw together;
- spreads what is left over the time to the reset: next request no earlier than
  last + (reset - now) / (remaining - reserve). Concurrent readers each pace this way; as they
  spend, `remaining` falls and every reader's interval grows, so together they settle at the rate
  the budget frees, and a reader left alone (the others finished) uses the whole budget. With a
  sliding window whose reset is when the next slot frees, the interval shrinks to nothing while
  plenty is left, and reading runs at full speed until the reserve is reached;
- at or below the reserve, waits until the reset;
- on a 429 resumes exactly at `X-RateLimit-Reset` (epoch seconds, the more precise figure), or
  after `Retry-After` when there is no reset (never hammers, never waits past what the API said).

How long any of these waits may be is the retry policy's business (http_retry.RetryPolicy caps
and the client logs them).

The Airflow pool per site bounds `readers`; budget_used >= 0.9 with <= 1% 429s is the target the
extraction benchmark measures.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Callable, Mapping


@dataclass
class BudgetState:
    limit: int | None = None
    remaining: int | None = None
    reset_at: float | None = None    # epoch seconds


class RateBudget:
    def __init__(self, readers: int = 1, *, clock: Callable[[], float] = time.time,
                 min_wait_after_reset: float = 0.05):
        if readers < 1:
            raise ValueError("readers must be at least 1")
        self.readers = readers
        self.reserve = readers
        self.state = BudgetState()
        self._clock = clock
        self._last_request_at: float | None = None
        self._min_wait_after_reset = min_wait_after_reset
        self._lock = threading.Lock()

    def delay(self) -> float:
        """Seconds to wait before the next request (0 when the budget is unknown or ample)."""
        with self._lock:
            s = self.state
            if s.remaining is None:
                return 0.0
            now = self._clock()
            to_reset = max(0.0, (s.reset_at or now) - now)
            spare = s.remaining - self.reserve
            if spare <= 0:
                return to_reset + self._min_wait_after_reset
            interval = to_reset / spare
            earliest = (self._last_request_at or now) + interval
            return max(0.0, earliest - now)

    def wait(self, sleep: Callable[[float], None] = time.sleep) -> float:
        d = self.delay()
        if d > 0:
            sleep(d)
        self.requested()
        return d

    def requested(self) -> None:
        """Note that a request is being sent now (the pacing interval counts from it)."""
        with self._lock:
            self._last_request_at = self._clock()

    def observe(self, headers: Mapping[str, str]) -> None:
        """Take the budget from a response's X-RateLimit-* headers (any status)."""
        limit = _int(headers.get("X-RateLimit-Limit"))
        remaining = _int(headers.get("X-RateLimit-Remaining"))
        reset = _float(headers.get("X-RateLimit-Reset"))
        with self._lock:
            if limit is not None:
                self.state.limit = limit
            if remaining is not None:
                self.state.remaining = remaining
            if reset is not None:
                self.state.reset_at = reset

    def rate_limited_wait(self, headers: Mapping[str, str]) -> float:
        """Seconds to wait after a 429: until X-RateLimit-Reset, else Retry-After, else 1 s."""
        self.observe(headers)
        now = self._clock()
        reset = _float(headers.get("X-RateLimit-Reset"))
        if reset is not None:
            seconds = reset - now + self._min_wait_after_reset
        else:
            seconds = _retry_after(headers.get("Retry-After"), now)
            if seconds is None:
                seconds = 1.0
        with self._lock:
            # The caller waits this long, so pacing must not wait for the same reset again: the
            # budget is unknown until the next response tells.
            self.state.remaining = None
        return max(0.0, seconds)


def _retry_after(value: str | None, now: float) -> float | None:
    """Retry-After as seconds from now: a number of seconds or an HTTP date."""
    if not value:
        return None
    seconds = _float(value)
    if seconds is None:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - now
        except (TypeError, ValueError, IndexError):
            return None
    return seconds


def _int(value: str | None) -> int | None:
    try:
        number = int(value) if value not in (None, "") else None
    except ValueError:
        return None
    return number if number is None or number >= 0 else None


def _float(value: str | None) -> float | None:
    try:
        number = float(value) if value not in (None, "") else None
    except ValueError:
        return None
    return number if number is None or math.isfinite(number) else None
