"""A sliding-window rate limit, one per site, with Recurly's X-RateLimit-* headers.

Recurly counts requests over a sliding 5-minute window with a capacity of 5x the per-minute
limit (a quiet site may burst). The sandbox takes the per-minute figure and the window length
separately (`--rate-limit`, `--rate-window`, default 60 s) so tests need not wait 5 minutes;
`--rate-window 300` reproduces Recurly exactly.

Headers: Limit = the window's capacity, Remaining = capacity minus the requests in the window,
Reset = epoch seconds (rounded up) when the oldest request in the window leaves it, i.e. when at
least one slot frees. A refused request is not counted, so a client that waits until Reset
always gets through.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import dataclass

# Headers sent when the limit is off: a capacity no client will ever pace against.
UNLIMITED = 1_000_000


@dataclass(frozen=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    reset: int  # epoch seconds

    def headers(self) -> dict[str, str]:
        headers = {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset),
        }
        if not self.allowed:
            headers["Retry-After"] = str(max(1, self.reset - int(time.time())))
        return headers


class SlidingWindowLimiter:
    """`per_minute` requests per minute over a window of `window_seconds`; 0 turns it off."""

    def __init__(self, per_minute: int = 0, window_seconds: float = 60.0, clock=time.time):
        if per_minute < 0 or window_seconds <= 0:
            raise ValueError("rate limit must be >= 0 per minute and the window > 0 seconds")
        self.per_minute = per_minute
        self.window = float(window_seconds)
        self.capacity = math.floor(per_minute * self.window / 60.0) if per_minute else 0
        if per_minute and self.capacity < 1:
            raise ValueError(f"a {window_seconds}s window at {per_minute}/min holds no request")
        self._clock = clock
        self._times: deque[float] = deque()
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.per_minute > 0

    def acquire(self) -> Decision:
        """Count one request if the window has room; say so either way, with the headers' values."""
        now = self._clock()
        if not self.enabled:
            return Decision(True, UNLIMITED, UNLIMITED, math.ceil(now + self.window))
        with self._lock:
            times = self._times
            horizon = now - self.window
            while times and times[0] <= horizon:
                times.popleft()
            allowed = len(times) < self.capacity
            if allowed:
                times.append(now)
            reset = math.ceil((times[0] if times else now) + self.window)
            return Decision(allowed, self.capacity, self.capacity - len(times), reset)
