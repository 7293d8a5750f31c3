"""The retry policy of every HTTP client of the project (Recurly now, the destinations next).

It is tenacity, the library the HTTP provider itself retries with, configured once here. A request
function raises one of two exceptions to ask for another attempt:

- `Transient(reason)`: a 5xx, a timeout, a dropped connection, a malformed body. Retried up to
  `max_attempts` times with exponential backoff and jitter (a uniform draw between half the step and
  all of it), so concurrent readers do not hit a recovering server in lockstep;
- `RateLimited(seconds, reason)`: the server said when to come back (a 429 with `Retry-After` or
  `X-RateLimit-Reset`). The next attempt starts exactly then, plus a small jitter that only spreads
  concurrent readers (`jitter_seconds`), never an escalating backoff past the reset. Such waits do
  not count as failed attempts, but their total per request is bounded by `max_rate_limited_seconds`.

Every single wait is capped at `max_wait_seconds` (a server announcing a reset a day ahead gets
that cap, logged, not a day of silence) and logged by the caller's `on_wait`. When the policy gives
up, the last `Transient` / `RateLimited` is raised for the caller to turn into its own error.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Callable, TypeVar

T = TypeVar("T")


class Transient(Exception):
    """An attempt failed in a way another attempt may not (retried with backoff)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class RateLimited(Exception):
    """The server asked to wait `seconds` before the next request (retried after exactly that)."""

    def __init__(self, seconds: float, reason: str):
        super().__init__(reason)
        self.seconds = max(0.0, seconds)
        self.reason = reason


@dataclass
class _Tally:
    """One call's attempts so far, read by the stop and wait rules."""
    failures: int = 0
    rate_limited_seconds: float = 0.0


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 8                    # per request, for Transient failures
    base_seconds: float = 0.25
    max_backoff_seconds: float = 30.0
    max_rate_limited_seconds: float = 900.0  # total time one request may wait for rate limits
    max_wait_seconds: float = 300.0          # any single wait (Recurly's window is 5 minutes)
    jitter_seconds: float = 0.1              # spread of readers resuming after a rate limit
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def backoff(self, failure: int) -> float:
        """Seconds before the retry after failure number `failure` (1-based)."""
        cap = min(self.max_backoff_seconds, self.base_seconds * (2 ** (failure - 1)))
        return self.rng.uniform(cap / 2, cap)

    def capped(self, seconds: float) -> float:
        return min(max(0.0, seconds), self.max_wait_seconds)

    def call(self, attempt: Callable[[], T], *, sleep: Callable[[float], None],
             on_wait: Callable[[BaseException, float, int], None] | None = None) -> T:
        """Run `attempt` until it returns, retrying `Transient` and `RateLimited` as described above.

        `on_wait(exception, seconds, failures)` is called before each wait (for logs and counters).
        """
        import tenacity

        tally = _Tally()

        def retry(state: "tenacity.RetryCallState") -> bool:
            exc = state.outcome.exception()
            if isinstance(exc, Transient):
                tally.failures += 1
            return isinstance(exc, (Transient, RateLimited))

        def wait(state: "tenacity.RetryCallState") -> float:
            exc = state.outcome.exception()
            if isinstance(exc, RateLimited):
                seconds = self.capped(exc.seconds) + self.rng.uniform(0.0, self.jitter_seconds)
                tally.rate_limited_seconds += seconds
                return seconds
            return self.capped(self.backoff(tally.failures))

        def stop(state: "tenacity.RetryCallState") -> bool:  # runs after wait: the tally includes it
            if isinstance(state.outcome.exception(), RateLimited):
                return tally.rate_limited_seconds > self.max_rate_limited_seconds
            return tally.failures >= self.max_attempts

        def before_sleep(state: "tenacity.RetryCallState") -> None:
            if on_wait is not None:
                on_wait(state.outcome.exception(), state.upcoming_sleep, tally.failures)

        retrying = tenacity.Retrying(retry=retry, stop=stop, wait=wait, sleep=sleep, reraise=True,
                                     before_sleep=before_sleep)
        try:
            return retrying(attempt)
        except (Transient, RateLimited) as exc:  # the policy gave up: raised again without tenacity's frames
            raise detached(exc)
        finally:
            # tenacity keeps this thread's next actions (bound methods of the Retrying) in the
            # Retrying's own thread-local state: a reference cycle that holds the rules above,
            # `attempt` and whatever they hold (a request and its body) until the cycle collector
            # runs. Emptied, the Retrying and all it holds are freed by reference counting on return.
            _forget_actions(retrying)


def detached(exc: BaseException) -> BaseException:
    """`exc` without its traceback, and without its context when its raiser suppressed it (`raise
    ... from None`: never shown). Both hold frames, and the frames of an exception that went
    through tenacity hold its call state, whose outcome is that exception (or leads back to it): a
    reference cycle, and everything the frames hold (a request and its body) waits for the cycle
    collector. An error kept after its request is settled is kept detached."""
    if exc.__suppress_context__:
        exc.__context__ = None
    return exc.with_traceback(None)


def _forget_actions(retrying) -> None:
    """Empty the calling thread's action list of a tenacity Retrying (kept in `iter_state`; a
    version without one keeps no actions, and leaves no cycle)."""
    state = getattr(retrying, "iter_state", None)
    if state is not None:
        state.reset()
