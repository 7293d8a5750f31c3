"""Sending one request: pacing by the API's own rate headers, retries with tenacity.

- Pacing: after every answer the API's Remaining and Reset headers are read (names per adapter);
  when Remaining reaches 0 the next request waits until Reset, so a client that keeps to the
  headers is never refused.
- 429: waited out until `Retry-After` (or Reset), plus a little jitter, then sent again; the waits of one request are
  bounded by `max_rate_limited_seconds`, and they do not count as attempts.
- 5xx, timeouts, dropped connections and unreadable bodies: retried with exponential backoff and
  jitter, at most `max_attempts` tries.
- Any other status is the adapter's to read (400 with per-record errors, 413 ...).
When retries run out, GaveUp says why (the last status and message); the engine then records the
batch's rows as retryable rejections. The secret is in the session's headers only: it never
appears in an exception, a log line or the ledger.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from recurly_elt.destinations.adapter import BadAnswer, RateHeaders, Request, Response

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 8
    base_seconds: float = 0.25
    max_backoff_seconds: float = 30.0
    max_rate_limited_seconds: float = 900.0
    connect_timeout: float = 10.0
    read_timeout: float = 120.0


class Transient(Exception):
    """Worth another try: 5xx, a dropped connection, a timeout, a body that is not what was sent."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class RateLimited(Exception):
    def __init__(self, wait: float, status: int = 429):
        super().__init__(f"HTTP {status}: rate limited, waiting {wait:.1f} s")
        self.wait, self.status = wait, status


class GaveUp(Exception):
    """Retries ran out; `status` is the last HTTP status (None: no answer)."""

    def __init__(self, message: str, status: int | None, attempts: int):
        super().__init__(message)
        self.status, self.attempts = status, attempts


class Unreadable(GaveUp):
    """An answer came (the request probably took effect) but could not be read, and the request
    must not be sent twice: its records' fate is uncertain."""


@dataclass
class Sent:
    response: Response
    attempts: int
    ms: int


@dataclass
class Counters:
    requests: int = 0          # every request that went out, retries included
    status_429: int = 0
    retries: int = 0
    waited_s: float = 0.0      # pacing and 429 waits


@dataclass
class Transport:
    """`session` is a requests.Session (the HTTP provider's, with the secret in its headers)."""

    session: Any
    base_url: str
    rate: RateHeaders
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.time
    counters: Counters = field(default_factory=Counters)
    _remaining: int | None = None
    _reset_at: float | None = None
    _last_sent: float | None = None

    def send(self, request: Request) -> Sent:
        import requests
        import tenacity

        state = {"attempts": 0, "failures": 0, "rate_waited": 0.0}
        started = time.perf_counter()

        def once() -> Response:
            self._pace()
            state["attempts"] += 1
            self.counters.requests += 1
            try:
                raw = self.session.request(request.method, self.base_url + request.path, data=request.body,
                                           headers=request.headers,
                                           timeout=(self.retry.connect_timeout, self.retry.read_timeout))
                body = raw.content  # read fully here: a connection dropped mid-body raises now
            except (requests.ConnectionError, requests.Timeout) as exc:
                raise Transient(f"no answer: {type(exc).__name__}") from None
            except requests.exceptions.ChunkedEncodingError:
                raise Transient("the connection closed mid-answer") from None
            response = Response(raw.status_code, {k.lower(): v for k, v in raw.headers.items()}, body)
            self._read_rate(response)
            if response.status == 429:
                self.counters.status_429 += 1
                raise RateLimited(self._retry_after(response))
            if response.status >= 500:
                raise Transient(f"HTTP {response.status}", response.status)
            return response

        def wait(retry_state: tenacity.RetryCallState) -> float:
            exc = retry_state.outcome.exception()
            if isinstance(exc, RateLimited):
                # A little jitter on top: waits of whole seconds would otherwise keep a client in
                # step with a limiter whose period is a whole number of seconds.
                seconds = exc.wait + random.uniform(0, min(1.0, exc.wait / 4))
                state["rate_waited"] += seconds
                return seconds
            self.counters.retries += 1
            state["failures"] += 1
            step = min(self.retry.max_backoff_seconds, self.retry.base_seconds * 2 ** (state["failures"] - 1))
            return random.uniform(step / 2, step)  # jitter: concurrent clients do not retry in step

        def stop(retry_state: tenacity.RetryCallState) -> bool:
            exc = retry_state.outcome.exception()
            if isinstance(exc, RateLimited):
                return state["rate_waited"] + exc.wait > self.retry.max_rate_limited_seconds
            return state["failures"] + 1 >= self.retry.max_attempts

        retrying = tenacity.Retrying(retry=tenacity.retry_if_exception_type((Transient, RateLimited)),
                                     wait=wait, stop=stop, sleep=self._sleep, reraise=True)
        try:
            response = retrying(once)
        except (Transient, RateLimited) as exc:
            raise GaveUp(f"{exc} after {state['attempts']} attempts", exc.status, state["attempts"]) from None
        return Sent(response, state["attempts"], int((time.perf_counter() - started) * 1000))

    def retry_read(self, request: Request, read: Callable[[Response], Any], *,
                   resend_unreadable: bool = True) -> tuple[Any, Sent]:
        """Send and read; an answer `read` cannot parse (BadAnswer) is sent again, like a 5xx, unless
        `resend_unreadable` is False (a request that must not reach the API twice): Unreadable then."""
        last: BadAnswer | None = None
        attempts = 0
        for _ in range(self.retry.max_attempts):
            sent = self.send(request)
            attempts += sent.attempts
            try:
                return read(sent.response), Sent(sent.response, attempts, sent.ms)
            except BadAnswer as exc:
                if not resend_unreadable:
                    raise Unreadable(f"unreadable answer: {exc}", sent.response.status, attempts) from None
                last = exc
                self.counters.retries += 1
                self._sleep(min(self.retry.max_backoff_seconds, self.retry.base_seconds * 2 ** min(attempts, 8)))
        raise GaveUp(f"unreadable answer after {attempts} attempts: {last}", None, attempts)

    # -- pacing -----------------------------------------------------------------------------------
    def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            self.counters.waited_s += seconds
            self.sleep(seconds)

    def _pace(self) -> None:
        if self.rate.requests_per_second:
            # 2 % over the interval: a sliding window of exactly N per second also counts the
            # request that opened the window, which exact spacing would land on.
            interval = 1.02 / self.rate.requests_per_second
            now = time.perf_counter()
            if self._last_sent is not None and now - self._last_sent < interval:
                self._sleep(interval - (now - self._last_sent))
            self._last_sent = time.perf_counter()
        if self._remaining is not None and self._remaining <= 0 and self._reset_at is not None:
            wait = self._reset_at - self.clock()
            if wait > 0:
                self._sleep(min(wait, self.retry.max_rate_limited_seconds))
            self._remaining = None

    def _read_rate(self, response: Response) -> None:
        remaining, reset = response.header(self.rate.remaining), response.header(self.rate.reset)
        try:
            self._remaining = int(float(remaining)) if remaining is not None else None
            if reset is not None:
                value = float(reset)
                if not 0 <= value < 1e11:  # an answer is untrusted: ignore absurd resets
                    raise ValueError(reset)
                self._reset_at = self.clock() + value if self.rate.reset_is_delta else value
        except ValueError:
            self._remaining, self._reset_at = None, None

    def _retry_after(self, response: Response) -> float:
        for name in (self.rate.retry_after, self.rate.reset):
            value = response.header(name)
            if value is None:
                continue
            try:
                seconds = float(value)
            except ValueError:
                continue
            if name == self.rate.reset and not self.rate.reset_is_delta:
                seconds -= self.clock()
            return min(max(seconds, 0.05), 3600.0)
        return 1.0
