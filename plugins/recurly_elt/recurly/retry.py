"""Retry policy: exponential backoff with jitter, bounded attempts and 429 patience.

Jitter (a uniform draw between half the exponential step and all of it) spreads retries of concurrent
readers apart, so they do not hit a recovering server in lockstep.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 8            # per request, for 5xx, timeouts, dropped connections, bad bodies
    base_seconds: float = 0.25
    max_backoff_seconds: float = 30.0
    max_rate_limited_seconds: float = 900.0  # total time one request may wait out 429s
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def backoff(self, attempt: int) -> float:
        """Seconds to wait before retry number `attempt` (1-based)."""
        cap = min(self.max_backoff_seconds, self.base_seconds * (2 ** (attempt - 1)))
        return self.rng.uniform(cap / 2, cap)
