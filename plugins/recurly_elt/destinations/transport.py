"""Sending one request: pacing by the API's own rate headers, retries by the project's one retry
policy (`recurly_elt.http_retry`, tenacity: the same rules as the Recurly client's).

- Pacing: after every answer the API's Remaining and Reset headers are read (names per adapter)
  and the requests still allowed are spread evenly over the time left until Reset (interval =
  time to Reset / (Remaining - requests in flight + 1)), so the window's budget is used while the
  requests stay apart; when nothing remains the next request waits until Reset, so a client that
  keeps to the headers is never refused (the wait is checked again after it until the budget
  allows, bounded in total by `max_rate_limited_seconds`: an answer that came meanwhile may have
  moved Reset later); once the window is over one request finds out the new window's budget
  while the others wait for its answer. A Reset in whole seconds from now (Klaviyo) is anchored
  on the answer's Date, so the next window is not waited for a whole second after the answer
  (_anchored_reset: never more than a second earlier than answer + Reset, absurd Dates ignored;
  a late answer from an earlier window is ignored). The engine sends from several threads:
  pacing, the header state and the counters are shared under one lock, and requests take turns.
- 429: waited out until `Retry-After` (or Reset), plus a little jitter, then sent again; the waits of
  one request are bounded by `max_rate_limited_seconds`, each by `max_wait_seconds` (logged), and
  they do not count as attempts.
- 5xx, timeouts, dropped connections and unreadable bodies: retried with exponential backoff and
  jitter, at most `max_attempts` tries.
- A request that must not reach the API twice (`resend_uncertain=False`: a kind the destination
  does not deduplicate, sent at most once) is retried only when it provably never left: the
  connection could not be opened (refused, unreachable, DNS, connect timeout). A failure after
  the request was written (the connection closed or reset before or during the answer, a read
  timeout, an unreadable body) means the API may have applied it: Unreadable, the batch is
  uncertain. A 5xx or 429 *answer* is the API saying it did not take the request: retried.
- Any other status is the adapter's to read (400 with per-record errors, 413 ...).
When retries run out, GaveUp says why (the last status and message); the engine then records the
batch's rows as retryable rejections. The secret is in the session's headers only: it never
appears in an exception, a log line or the ledger.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from recurly_elt.destinations.adapter import BadAnswer, RateHeaders, Request, Response
from recurly_elt.http_retry import RateLimited, RetryPolicy, Transient

log = logging.getLogger(__name__)


# Destinations answer bulk requests more slowly than Recurly lists: a longer read timeout.
DESTINATION_RETRY = RetryPolicy(read_timeout=120.0)

# Anchoring a whole-second Reset on the answer's Date (_anchored_reset): a Date further than
# _DATE_FAR_S from our clock is ignored, and so is one whose bound on the offset is further than
# _DATE_SLACK_S from the estimate so far (a true bound is up to a second, plus the answer's transit,
# below it); the anchored end is never more than a second and _ANCHOR_MARGIN_S before
# answer + Reset.
_DATE_FAR_S = 3600.0
_DATE_SLACK_S = 1.5
_ANCHOR_MARGIN_S = 0.1

# Prepared requests kept per transport (one per method, path and headers: a destination has a few).
_PREPARED_PATHS = 64


class GaveUp(Exception):
    """Retries ran out; `status` is the last HTTP status (None: no answer)."""

    def __init__(self, message: str, status: int | None, attempts: int):
        super().__init__(message)
        self.status, self.attempts = status, attempts


class Unreadable(GaveUp):
    """The request was written but its answer was lost or could not be read (it may have taken
    effect), and the request must not be sent twice: its records' fate is uncertain."""


def never_sent(exc: BaseException) -> bool:
    """True when a requests exception proves the request never reached the server: the
    connection could not be opened (refused, unreachable, DNS failure, connect timeout). Anything
    later (reset, closed without answer, read timeout) may follow a request the server applied."""
    import requests
    from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

    if isinstance(exc, requests.ConnectTimeout):
        return True
    reason = exc.args[0] if exc.args else None
    reason = getattr(reason, "reason", reason)  # urllib3's MaxRetryError wraps the cause
    return isinstance(reason, (NewConnectionError, ConnectTimeoutError))


def _clear_frames(exc: BaseException | None) -> None:
    """Clear the variables of the finished frames of a requests exception and of those it was
    raised from (urllib3's). urllib3 keeps the exception it raises in its own frames' variables:
    a reference cycle, and those frames hold their callers' (the request, its body, and what
    waits for the answer) until the cycle collector runs."""
    import traceback

    seen: set[int] = set()
    todo = [exc]
    while todo:
        exc = todo.pop()
        if exc is None or id(exc) in seen:
            continue
        seen.add(id(exc))
        traceback.clear_frames(exc.__traceback__)  # the frame still running (ours) is left as it is
        todo += (exc.__cause__, exc.__context__)


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
    first_sent_at: float | None = None   # epoch seconds of the first request and of the last answer
    last_answer_at: float | None = None


@dataclass
class Transport:
    """`session` is a requests.Session (the HTTP provider's, with the secret in its headers)."""

    session: Any
    base_url: str
    rate: RateHeaders
    retry: RetryPolicy = DESTINATION_RETRY
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.time
    counters: Counters = field(default_factory=Counters)
    _remaining: int | None = None
    _reset_at: float | None = None
    _last_sent: float | None = None     # perf_counter of the last send (the documented rate)
    _last_sent_at: float | None = None  # clock() of the last send (the headers' pacing: Reset's clock)
    _in_flight: int = 0
    _headers_seen: bool = False
    # Reset in whole seconds from now: the server's clock is at least this many seconds ahead of
    # ours (the latest lower bound its Date headers gave); None until a Date was read. A 429 turns
    # the anchoring off (_anchored False): from then on a Reset counts from the answer.
    _server_ahead_s: float | None = None
    _date_outlier: float | None = None  # the last answer's bound, when it was ignored as too far off
    _anchored: bool = True
    _reset_anchored: bool = False      # the current _reset_at came from _anchored_reset
    _budget_date: float | None = None  # the server second (Date) of the answer the budget is from
    _send: dict = field(default_factory=dict, repr=False)       # session.send's settings, read once
    _prepared: dict = field(default_factory=dict, repr=False)   # (method, path, headers) -> PreparedRequest
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _turn: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        self._answer = threading.Condition(self._lock)  # notified at every answer
        # requests reads the whole environment (proxies, CA bundle, .netrc) again for every request
        # when trust_env is on; the host never changes, so it is read once here and kept.
        if getattr(self.session, "trust_env", False) and hasattr(self.session, "merge_environment_settings"):
            settings = self.session.merge_environment_settings(self.base_url, {}, None, None, None)
            self.session.proxies.update(settings.get("proxies") or {})
            if settings.get("verify") not in (None, True):
                self.session.verify = settings["verify"]
            self.session.trust_env = False
        # What Session.request would merge again for every request: the session's proxies, stream,
        # verify and cert, the timeouts; redirects followed, as Session.request does.
        self._send = {**self.session.merge_environment_settings(self.base_url, {}, None, None, None),
                      "timeout": (self.retry.connect_timeout, self.retry.read_timeout), "allow_redirects": True}

    def retry_read(self, request: Request, read: Callable[[Response], Any], *,
                   resend_uncertain: bool = True) -> tuple[Any, Sent]:
        """Send `request` and read its answer with `read`, retrying by the project's one retry policy
        (http_retry): 5xx, no answer, a dropped connection and 429s (waited out until Retry-After /
        Reset). An answer `read` cannot parse (BadAnswer) is retried like a 5xx. With
        `resend_uncertain` False (a request that must not reach the API twice), an attempt that
        may have taken effect (written, then no answer or an unreadable one) is not retried:
        Unreadable; one that never left (connect failure) still is. GaveUp when retries run out."""
        import requests

        attempts, last_status = 0, None
        started = time.perf_counter()

        def once() -> tuple[Any, Response]:
            nonlocal attempts, last_status
            self._pace()
            attempts += 1
            last_status = None
            try:
                raw = self.session.send(self._prepare(request), **self._send)
                body = raw.content  # read fully here: a connection dropped mid-body raises now
            except (requests.ConnectionError, requests.Timeout) as exc:
                _clear_frames(exc)
                self._answered(None)
                if never_sent(exc):
                    raise Transient(f"not sent: the connection could not be opened ({type(exc).__name__})") from None
                if not resend_uncertain:
                    raise Unreadable(f"no answer after the request was sent ({type(exc).__name__}): it may "
                                     "have been applied", None, attempts) from None
                raise Transient(f"no answer: {type(exc).__name__}") from None
            except requests.exceptions.ChunkedEncodingError as exc:
                _clear_frames(exc)
                self._answered(None)
                if not resend_uncertain:
                    raise Unreadable("the connection closed mid-answer: the request may have been applied",
                                     None, attempts) from None
                raise Transient("the connection closed mid-answer") from None
            except BaseException:
                self._answered(None)
                raise
            response = Response(raw.status_code, {k.lower(): v for k, v in raw.headers.items()}, body)
            last_status = response.status
            self._answered(response)
            if response.status == 429:
                raise RateLimited(self._retry_after(response), f"HTTP {response.status}: rate limited")
            if response.status >= 500:
                raise Transient(f"HTTP {response.status}")
            try:
                return read(response), response
            except BadAnswer as exc:
                if not resend_uncertain:
                    raise Unreadable(f"unreadable answer: {exc}", response.status, attempts) from None
                raise Transient(f"unreadable answer: {exc}") from None

        def on_wait(exc: BaseException, seconds: float, failures: int) -> None:
            if isinstance(exc, Transient):
                with self._lock:
                    self.counters.retries += 1
            level = logging.INFO if seconds >= 1 else logging.DEBUG
            log.log(level, "%s %s: %s; next try in %.1f s", request.method, request.path, exc, seconds)

        try:
            answer, response = self.retry.call(once, sleep=self._sleep, on_wait=on_wait)
        except (Transient, RateLimited) as exc:
            raise GaveUp(f"{exc} after {attempts} attempts", last_status, attempts) from None
        return answer, Sent(response, attempts, int((time.perf_counter() - started) * 1000))

    def _prepare(self, request: Request):
        """The PreparedRequest Session.request would send. Preparing merges the session's headers
        (the key's among them), cookies, auth and hooks with the request's and checks the URL and
        every header: the same for every request to one path, so done once per (method, path,
        headers) and copied, the body set on the copy. A session with cookies (the API set some)
        or an auth object (it may sign each request) prepares every request, as requests does."""
        import requests

        if self.session.auth is not None or len(self.session.cookies):
            return self.session.prepare_request(requests.Request(
                request.method, self.base_url + request.path, headers=request.headers, data=request.body))
        key = (request.method, request.path, tuple(request.headers.items()))
        template = self._prepared.get(key)
        if template is None:
            template = self.session.prepare_request(requests.Request(
                request.method, self.base_url + request.path, headers=request.headers))
            if len(self._prepared) < _PREPARED_PATHS:  # paths with ids in them (job polls) are not kept
                self._prepared[key] = template
        prepared = template.copy()
        prepared.prepare_body(request.body, None)
        return prepared

    # -- pacing -----------------------------------------------------------------------------------
    def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            with self._lock:
                self.counters.waited_s += seconds
            self.sleep(seconds)

    def _pace(self) -> None:
        """Wait for this request's turn: threads go one at a time through here, each waiting what
        the headers (or the documented rate) ask since the request before it."""
        with self._turn:
            if self.rate.requests_per_second:
                # 2 % over the interval: a sliding window of exactly N per second also counts the
                # request that opened the window, which exact spacing would land on.
                interval = 1.02 / self.rate.requests_per_second
                now = time.perf_counter()
                if self._last_sent is not None and now - self._last_sent < interval:
                    self._sleep(interval - (now - self._last_sent))
            # Checked again after every wait (an answer that came meanwhile may have moved Reset later)
            # until the budget allows, the waits of one request bounded in total like its 429 waits.
            waited = 0.0
            while True:
                with self._answer:
                    # The budget is unknown after a wait for Reset: one request finds it out while the
                    # others wait for its answer (they would all go at once into the new window).
                    while self._headers_seen and self._remaining is None and self._in_flight > 0:
                        self._answer.wait(1.0)
                    wait = self._header_wait()
                if wait <= 0 or waited >= self.retry.max_rate_limited_seconds:
                    break
                wait = min(self.retry.capped(wait), self.retry.max_rate_limited_seconds - waited)
                if wait <= 0:  # a policy that allows no wait
                    break
                self._sleep(wait)
                waited += wait
            with self._lock:
                if self._remaining is not None and self._reset_at is not None \
                        and self._remaining - self._in_flight <= 0 and self._reset_at - self.clock() <= 1e-3:
                    self._remaining = None  # the window is over: its budget unknown until the next answer
                self._last_sent, self._last_sent_at = time.perf_counter(), self.clock()
                self._in_flight += 1
                self.counters.requests += 1
                if self.counters.first_sent_at is None:
                    self.counters.first_sent_at = self.clock()

    def _header_wait(self) -> float:
        """Seconds until the next request may go, by the last Remaining and Reset (lock held)."""
        if self._remaining is None or self._reset_at is None:
            return 0.0
        to_reset = max(0.0, self._reset_at - self.clock())
        spare = self._remaining - self._in_flight  # requests sent since that answer are not in it
        if spare <= 0:
            return to_reset
        since = self.clock() - self._last_sent_at if self._last_sent_at is not None else to_reset
        return max(0.0, to_reset / (spare + 1) - since)

    def _answered(self, response: Response | None) -> None:
        with self._lock:
            self._in_flight -= 1
            self.counters.last_answer_at = self.clock()
            self._answer.notify_all()
            if response is None:
                return
            self._read_rate(response)
            if response.status == 429:
                self.counters.status_429 += 1
                self._anchored = self._reset_anchored = False

    def _read_rate(self, response: Response) -> None:
        """Remaining and Reset of an answer (lock held). A Reset in seconds from now counts from
        the answer, never from the send (the API may count the request later than it was sent:
        counting from the send or from halfway started the next window early and drew 429s), and
        a whole-second Reset is moved back to the server's whole second (_anchored_reset). An
        answer whose Date is an earlier second than that of the answer the current anchored budget
        came from was counted in an earlier window and came late: its Remaining and Reset are
        ignored, the current budget stays. One of the same second or later replaces the budget,
        also when its window ends sooner: an API with several windows (Klaviyo's 1 s burst and
        1 min steady windows) answers with the one that binds, and the shorter one must be obeyed.
        One whose anchored window is over by the time it is read says nothing of the current
        budget: Remaining unknown, as after a wait for Reset."""
        remaining, reset = response.header(self.rate.remaining), response.header(self.rate.reset)
        try:
            if reset is not None:
                value = float(reset)
                if not 0 <= value < 1e11:  # an answer is untrusted: ignore absurd resets
                    raise ValueError(reset)
                if self.rate.reset_is_delta:
                    now = self.clock()
                    read = self._anchored_reset(response, value, now)
                    if read is not None and self._reset_anchored and self._budget_date is not None \
                            and read[1] < self._budget_date:
                        return  # an earlier window's answer, come late: the current budget stays
                    self._reset_anchored = read is not None
                    self._reset_at, self._budget_date = read if read is not None else (now + value, None)
                else:
                    self._reset_at = value
            if remaining is not None:
                count = float(remaining)
                if not 0 <= count < 1e12:  # not a count (negative, inf, nan, absurd): unreadable
                    raise ValueError(remaining)
                self._remaining = int(count)
            else:
                self._remaining = None
            self._headers_seen = self._headers_seen or remaining is not None
            if self._reset_anchored and self._reset_at is not None and self._reset_at <= self.clock():
                self._remaining = None
        except ValueError:
            self._remaining, self._reset_at, self._reset_anchored, self._budget_date = None, None, False, None

    def _anchored_reset(self, response: Response, seconds: float, now: float) -> tuple[float, float] | None:
        """When a whole-second Reset ends, in our clock, read against the answer's `Date` (lock
        held), with the answer's Date in server seconds; None when that cannot be said (then it
        ends `now + seconds`, the answer's own bound).

        Fixed windows end on whole seconds of the server's clock, and a whole-second Reset is the
        time from the request's second to the window's end (the offline Klaviyo: the window's end
        minus the second it counted the request in; a Reset rounded up, ceil, says the same). The
        answer's Date (whole seconds, floor) is written after the request was counted, so the
        window ends at the latest at Date + Reset, server time. Server time is ours plus an offset
        of which every answer gives a lower bound, Date - the time we read it; the largest one
        seen is kept (with answers at different fractions of a second it comes within a few
        milliseconds of the offset). So the window ends at the latest at Date + Reset - that
        bound, clamped to [now + Reset - 1 s - _ANCHOR_MARGIN_S, now + Reset]. An answer is
        untrusted: a Date more than _DATE_FAR_S off our clock, or one whose bound is more than
        _DATE_SLACK_S from the estimate so far (a day ahead, year 9999, far in the past), is
        ignored (None), so one absurd Date neither moves the estimate nor the window; two in a row
        that agree with each other replace the estimate (the first one may have come from a slow
        answer). Assumed: the rate limit and Date read one clock, and Reset is not rounded down;
        a 429 says an assumption failed (or another client shares the budget), and from then on
        the Reset counts from the answer (_anchored False)."""
        import email.utils

        date = response.header("Date")
        try:
            server_now = email.utils.parsedate_to_datetime(date).timestamp() if date else None
        except (TypeError, ValueError, IndexError, OverflowError):
            server_now = None
        if server_now is None or not float(seconds).is_integer():
            return None
        ahead = server_now - now
        if abs(ahead) > _DATE_FAR_S:
            return None  # a Date hours off ours (or garbage that parsed): not the server's clock
        if self._server_ahead_s is not None and abs(ahead - self._server_ahead_s) > _DATE_SLACK_S:
            # One answer's Date moving the estimate by more than a second is ignored; the next one
            # agreeing with it says the estimate was wrong (the first answer was slow, say).
            outlier, self._date_outlier = self._date_outlier, ahead
            if outlier is None or abs(ahead - outlier) > _DATE_SLACK_S:
                return None
            self._server_ahead_s, self._date_outlier = max(ahead, outlier), None
        else:
            self._date_outlier = None
            if self._server_ahead_s is None or ahead > self._server_ahead_s:
                self._server_ahead_s = ahead
        if not self._anchored:
            return None
        # Whatever the Date says, the window ends no later than the old rule (now + Reset) and at
        # most a second (and _ANCHOR_MARGIN_S) earlier.
        return min(now + seconds, max(now + seconds - 1.0 - _ANCHOR_MARGIN_S,
                                      server_now + seconds - self._server_ahead_s)), server_now

    def _retry_after(self, response: Response) -> float:
        for name in (self.rate.retry_after, self.rate.reset):
            value = response.header(name)
            if value is None:
                continue
            try:
                seconds = float(value)
            except ValueError:
                continue
            if not math.isfinite(seconds):  # nan would reach sleep(), inf is no wait either
                continue
            if name == self.rate.reset and not self.rate.reset_is_delta:
                seconds -= self.clock()
            return min(max(seconds, 0.05), 3600.0)
        return 1.0
