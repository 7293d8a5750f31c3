"""The transport's pacing by rate headers, on a stub session and a stub clock: the requests a window
still allows are spread evenly over the time to Reset, requests in flight count against them, and
at Remaining 0 the next request waits for Reset."""

from __future__ import annotations

import email.utils
import math
import threading

import pytest
import requests

from recurly_elt.destinations.adapter import RateHeaders, Request, Response
from recurly_elt.destinations.transport import Transport
from recurly_elt.http_retry import RetryPolicy

HEADERS = RateHeaders("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset", reset_is_delta=False)


class Clock:
    def __init__(self):
        self.now = 1_000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


class Raw:
    def __init__(self, remaining: int, reset: float):
        self.status_code, self.content = 200, b"{}"
        self.headers = {"X-RateLimit-Remaining": str(remaining), "X-RateLimit-Reset": str(reset)}


class Stub(requests.Session):
    """A requests session that answers with `answer()` instead of sending (the transport sends
    through `send`)."""

    def __init__(self):
        super().__init__()
        self.trust_env = False

    def send(self, request, **kwargs):
        return self.answer()


class Session(Stub):
    """Answers each request with the next (remaining, reset) of `answers`."""

    def __init__(self, answers, on_request=None):
        super().__init__()
        self.answers, self.on_request, self.sent = list(answers), on_request, 0

    def answer(self):
        self.sent += 1
        if self.on_request:
            self.on_request()
        return Raw(*self.answers.pop(0))


def make(answers, clock, **kw) -> tuple[Transport, Session]:
    session = Session(answers, **kw)
    return Transport(session=session, base_url="http://127.0.0.1:1", rate=HEADERS, retry=RetryPolicy(),
                     sleep=clock.sleep, clock=clock), session


def send(transport: Transport) -> None:
    transport.retry_read(Request("POST", "/x", b"{}"), lambda response: response.status)



def read_dated(transport, remaining: str, reset: str, date: str) -> None:
    """The rate headers of a 202 answer with its Date, read by the transport (lock held)."""
    transport._read_rate(Response(202, {"ratelimit-remaining": remaining, "ratelimit-reset": reset,
                                        "date": date}, b""))

def test_remaining_requests_are_spread_evenly_until_reset():
    clock = Clock()
    transport, _ = make([(9, 1_001.0), (8, 1_001.0)], clock)
    send(transport)          # the first goes at once; 9 remain for the 1 s to Reset
    send(transport)
    assert clock.slept and abs(clock.slept[0] - 1.0 / 10) < 0.01


def test_at_remaining_zero_the_next_request_waits_for_reset_then_goes_unpaced():
    clock = Clock()
    transport, _ = make([(0, 1_002.5), (99, 1_003.0), (98, 1_003.0)], clock)
    send(transport)
    send(transport)          # waits the 2.5 s to Reset
    assert abs(clock.slept[0] - 2.5) < 0.01
    send(transport)          # 99 remain for 0.5 s: about 5 ms apart
    assert len(clock.slept) == 1 or clock.slept[1] < 0.01


def test_requests_in_flight_count_against_remaining():
    clock = Clock()
    transport, _ = make([(2, 1_001.0)], clock)
    send(transport)          # Remaining 2 for the next second
    transport._in_flight = 2  # two requests of other threads sent since that answer, unanswered
    assert abs(transport._header_wait() - 1.0) < 0.01  # nothing spare: wait for Reset
    transport._in_flight = 0
    assert 0 < transport._header_wait() <= 1.0 / 3 + 0.01


def test_counters_are_exact_with_several_threads():
    clock = Clock()
    transport, session = make([(1_000_000, 1_060.0)] * 200, clock)
    threads = [threading.Thread(target=lambda: [send(transport) for _ in range(50)]) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert transport.counters.requests == session.sent == 200
    assert transport._in_flight == 0


def test_after_a_wait_for_reset_one_request_probes_the_new_window_alone():
    clock = Clock()
    transport, _ = make([(0, 1_001.0)], clock)
    send(transport)
    transport._in_flight = 1          # another thread's request is out, into the new window
    with transport._lock:
        transport._remaining = None   # as after the wait for Reset
    released = []

    def third():
        transport._pace()
        released.append(True)

    waiter = threading.Thread(target=third)
    waiter.start()
    waiter.join(0.3)
    assert not released               # held until the probe's answer says what the window allows
    transport._answered(None)         # the probe answered (no headers: the budget stays unknown)
    waiter.join(5)
    assert released


# -- a Reset in whole seconds from now (Klaviyo), anchored on the answer's Date ---------------------
DELTA = RateHeaders("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset", reset_is_delta=True)


def http_date(epoch: float) -> str:
    return email.utils.formatdate(epoch, usegmt=True)  # whole seconds, rounded down


class Answer:
    def __init__(self, status: int, headers: dict):
        self.status_code, self.content, self.headers = status, b"{}", headers


class FixedWindows(Stub):
    """A session that is the API: `limit` requests per window of `window` s aligned on the
    server's clock (ours + `ahead`), each request counted `count_delay` after it is sent and
    answered `latency` after; headers as the offline Klaviyo writes them (Reset = the window's end
    minus the second the request was counted in, Date at the answer), 429 over the limit."""

    def __init__(self, clock: Clock, limit: int, window: int, latency: float, ahead: float = 0.0,
                 count_delay: float = 0.0):
        super().__init__()
        self.clock, self.limit, self.window, self.latency = clock, limit, window, latency
        self.ahead, self.count_delay = ahead, count_delay
        self.start, self.count = None, 0
        self.accepted: list[float] = []   # server times the accepted requests were counted at
        self.refused = 0

    def answer(self):
        counted = self.clock.now + self.count_delay + self.ahead
        start = math.floor(counted / self.window) * self.window
        if start != self.start:
            self.start, self.count = start, 0
        allowed = self.count < self.limit
        self.count += allowed
        self.clock.now += self.latency
        headers = {"RateLimit-Limit": str(self.limit), "RateLimit-Remaining": str(self.limit - self.count),
                   "RateLimit-Reset": str(start + self.window - math.floor(counted)),
                   "Date": http_date(self.clock.now + self.ahead)}
        if allowed:
            self.accepted.append(counted)
            return Answer(202, headers)
        self.refused += 1
        return Answer(429, {**headers, "Retry-After": "1"})

    def windows(self) -> int:
        """Windows from the first accepted request's to the last one's."""
        return math.floor(self.accepted[-1] / self.window) - math.floor(self.accepted[0] / self.window) + 1


def delta_transport(session, clock: Clock) -> Transport:
    return Transport(session=session, base_url="http://127.0.0.1:1", rate=DELTA, retry=RetryPolicy(),
                     sleep=clock.sleep, clock=clock)


def test_a_whole_second_reset_ends_on_the_servers_second_not_a_second_after_the_answer():
    clock = Clock()
    clock.now = 1_000.05
    answers = [Answer(202, {"RateLimit-Remaining": "5", "RateLimit-Reset": "1", "Date": http_date(1_000.0)}),
               Answer(202, {"RateLimit-Remaining": "0", "RateLimit-Reset": "1", "Date": http_date(1_000.0)})]

    class Two(Stub):
        def answer(self):
            clock.now += 0.3 if len(answers) == 1 else 0.0
            return answers.pop(0)

    transport = delta_transport(Two(), clock)
    send(transport)   # read at 1000.05 with Date 1000: the server's clock is at least 0.05 s behind ours
    send(transport)   # read at 1000.35: Remaining 0 until "1 s from now"
    # the window ends at the server's 1001 (1001.05 at the latest in our clock), not at 1001.35
    assert abs(transport._reset_at - 1_001.05) < 1e-6


def test_one_request_per_second_uses_every_window_and_draws_no_429():
    clock = Clock()
    clock.now = 1_000.62   # the server's clock is 0.37 s ahead of ours, each answer takes 0.3 s
    server = FixedWindows(clock, limit=1, window=1, latency=0.3, ahead=0.37, count_delay=0.01)
    transport = delta_transport(server, clock)
    for _ in range(30):
        send(transport)
    assert server.refused == 0 and transport.counters.status_429 == 0
    # waiting a whole second from each answer would span 30 x 1.3 s: 39 windows or more
    assert server.windows() <= 32, server.windows()


def test_a_429_turns_the_anchoring_off():
    clock = Clock()
    clock.now = 1_000.05
    server = FixedWindows(clock, limit=1, window=1, latency=0.3)
    transport = delta_transport(server, clock)
    send(transport)
    send(transport)
    assert transport._reset_anchored and transport._reset_at < clock.now + 1 - 0.1
    with transport._lock:
        transport._remaining = None  # as if the budget were unknown: the next request draws a 429
    server.count = 1                 # another client used this window
    send(transport)                  # 429, waited out, sent again
    assert transport.counters.status_429 == 1
    assert not transport._anchored
    assert abs(transport._reset_at - (clock.now + 1)) < 1e-6  # counts from the answer again


def test_an_answer_read_after_its_anchored_window_ended_leaves_the_budget_unknown():
    clock = Clock()
    clock.now = 1_000.05
    transport = delta_transport(Session([]), clock)
    with transport._lock:
        read_dated(transport, "9", "1", http_date(1_000.0))
        clock.now = 1_001.3   # counted in the window that ended at 1001 (1001.05 here), read late
        read_dated(transport, "0", "1", http_date(1_000.0))
    # not "0 left until 1001.05", which is over: the next request would go at once, again and again
    assert transport._remaining is None and transport._reset_at <= clock.now
    assert transport._header_wait() == 0.0


def test_without_a_readable_date_or_a_whole_second_reset_the_reset_counts_from_the_answer():
    clock = Clock()
    transport = delta_transport(Session([]), clock)
    for headers in ({"ratelimit-remaining": "0", "ratelimit-reset": "1"},
                    {"ratelimit-remaining": "0", "ratelimit-reset": "1", "date": "not a date"},
                    {"ratelimit-remaining": "0", "ratelimit-reset": "0.5", "date": http_date(1_000.0)}):
        with transport._lock:
            transport._read_rate(Response(202, headers, b""))
        assert transport._reset_at == clock.now + float(headers["ratelimit-reset"])
        assert not transport._reset_anchored


def test_an_answer_that_moves_reset_later_during_a_wait_is_waited_for_too():
    clock = Clock()
    transport, _ = make([(0, 1_001.0), (5, 1_003.0)], clock)
    send(transport)                      # Remaining 0 until 1001
    late = []

    def sleep(seconds: float) -> None:   # while the next request waits, another answer says 0 until 1002
        clock.sleep(seconds)
        if not late:
            late.append(True)
            with transport._lock:
                transport._remaining, transport._reset_at = 0, 1_002.0

    transport.sleep = sleep
    send(transport)
    assert abs(clock.now - 1_002.0) < 1e-6   # sent at 1002, not at 1001 into a used window


class Scripted(Stub):
    """A session answering each request with the next of `answers`, each built from the clock at
    the answer (so a Date can be written relative to it); `sent_at` has the clock at each send."""

    def __init__(self, clock: Clock, answers):
        super().__init__()
        self.clock, self.answers, self.sent_at = clock, list(answers), []

    def answer(self):
        self.sent_at.append(self.clock.now)
        self.clock.now += 0.3
        return self.answers.pop(0)(self.clock.now)


def klaviyo(remaining: int, date=lambda now: http_date(now)):
    return lambda now: Answer(202, {"RateLimit-Remaining": str(remaining), "RateLimit-Reset": "1",
                                    "Date": date(now)})


HOSTILE_DATES = {
    "a day ahead": lambda now: http_date(now + 86_400),
    "year 9999": lambda now: "Fri, 31 Dec 9999 23:59:59 GMT",
    "far in the past": lambda now: "Mon, 01 Jan 1900 00:00:00 GMT",
    "three seconds behind": lambda now: http_date(now - 3),
    "garbage": lambda now: "soon, probably",
}


@pytest.mark.parametrize("first", [True, False], ids=["first Date", "after a good one"])
@pytest.mark.parametrize("name", list(HOSTILE_DATES))
def test_a_hostile_date_neither_moves_the_offset_nor_puts_reset_in_the_past(name, first):
    date = HOSTILE_DATES[name]
    clock = Clock()
    clock.now = 1_000.05
    answers = [] if first else [klaviyo(5)]
    session = Scripted(clock, answers + [klaviyo(0, date), klaviyo(5), klaviyo(5)])
    transport = delta_transport(session, clock)
    if not first:
        send(transport)
    ahead = transport._server_ahead_s
    send(transport)                      # Remaining 0 "for 1 s", with the hostile Date
    read_at = clock.now
    if not (first and name == "three seconds behind"):   # as the run's first Date it may be right
        assert transport._server_ahead_s == ahead
    assert transport._remaining == 0
    assert read_at + 1 - 1 - 0.1 - 1e-9 <= transport._reset_at <= read_at + 1
    send(transport)                      # honours Remaining 0: waits for that Reset
    assert session.sent_at[-1] >= read_at + 1 - 1 - 0.1 - 1e-9
    send(transport)                      # and the Dates after it are still read
    assert transport._reset_anchored and transport._anchored


def test_an_anchored_reset_is_never_more_than_a_second_before_the_answer_plus_reset():
    clock = Clock()
    clock.now = 1_000.05
    transport = delta_transport(Session([]), clock)
    with transport._lock:
        read_dated(transport, "5", "1", http_date(1_000.0))
        clock.now = 1_001.45   # read 1.45 s after its Date second began (a slow answer)
        read_dated(transport, "0", "2", http_date(1_000.0))
    # Date + Reset - offset would say 1002.05: the window ends no earlier than 1001.45 + 2 - 1.1
    assert transport._remaining == 0 and abs(transport._reset_at - (1_001.45 + 2 - 1.1)) < 1e-6


def test_a_late_answer_from_an_earlier_window_does_not_replace_the_current_budget():
    clock = Clock()
    clock.now = 1_000.05
    transport = delta_transport(Session([]), clock)
    with transport._lock:
        read_dated(transport, "9", "1", http_date(1_000.0))
        clock.now = 1_001.1    # the next window's answer: 8 left until 1002 (1002.05 here)
        read_dated(transport, "8", "1", http_date(1_001.0))
        assert transport._remaining == 8 and abs(transport._reset_at - 1_002.05) < 1e-6
        clock.now = 1_001.3    # an answer counted in the window that ended at 1001, read late
        read_dated(transport, "0", "1", http_date(1_000.0))
    assert transport._remaining == 8 and abs(transport._reset_at - 1_002.05) < 1e-6


def moving_reset(transport: Transport, clock: Clock, times: int | None):
    """A sleep during which another answer says 0 left until a second later, `times` times (None:
    every time)."""
    moves = []

    def sleep(seconds: float) -> None:
        clock.sleep(seconds)
        if times is None or len(moves) < times:
            moves.append(True)
            with transport._lock:
                transport._remaining, transport._reset_at = 0, clock.now + 1.0

    return sleep


def test_the_wait_is_checked_again_until_the_budget_allows():
    clock = Clock()
    sent_at = []
    transport, _ = make([(0, 1_001.0), (5, 1_010.0)], clock, on_request=lambda: sent_at.append(clock.now))
    send(transport)                      # Remaining 0 until 1001
    transport.sleep = moving_reset(transport, clock, times=5)
    send(transport)                      # Reset moved to 1002, ... 1006 during the waits
    assert abs(sent_at[-1] - 1_006.0) < 1e-6


def test_the_waits_checked_again_are_bounded_by_the_policys_total():
    clock = Clock()
    sent_at = []
    transport, _ = make([(0, 1_001.0), (5, 1_010.0)], clock, on_request=lambda: sent_at.append(clock.now))
    transport.retry = RetryPolicy(max_rate_limited_seconds=2.5)
    send(transport)
    transport.sleep = moving_reset(transport, clock, times=None)   # Reset moves on forever
    send(transport)                      # goes after 2.5 s of waits (a 429 would be waited out then)
    assert abs(sent_at[-1] - 1_002.5) < 1e-6


def test_a_first_date_seconds_off_is_replaced_once_two_answers_agree():
    clock = Clock()
    clock.now = 1_000.05
    session = Scripted(clock, [klaviyo(5, lambda now: http_date(now - 4))] + [klaviyo(5)] * 3)
    transport = delta_transport(session, clock)
    send(transport)                  # a slow first answer: its Date 4 s behind the time it was read
    send(transport)                  # 4 s off that estimate: ignored once
    assert not transport._reset_anchored
    send(transport)                  # again, agreeing with the one before: the estimate follows
    assert transport._reset_anchored and -1.0 <= transport._server_ahead_s <= 0.0


@pytest.mark.parametrize("remaining", ["inf", "-inf", "1e999", "nan", "-3", "7.5e400"])
def test_a_remaining_that_is_no_count_is_read_as_unknown_not_raised(remaining):
    """An answer is untrusted: a Remaining that is not a finite count (float('inf') would make
    int() raise OverflowError after the destination accepted the request, and leave its batch
    pending) is read as no budget known, like any unreadable header."""
    clock = Clock()
    transport, session = make([(remaining, 1_001.0), (5, 1_001.0)], clock)
    send(transport)
    assert transport._remaining is None
    send(transport)  # the next request goes, and reads the next answer's budget
    assert session.sent == 2 and transport._remaining == 5


@pytest.mark.parametrize("retry_after", ["nan", "inf", "-inf"])
def test_a_429_whose_retry_after_is_no_duration_waits_by_its_reset_instead(retry_after):
    """Retry-After is read before Reset; one that is not a finite number (nan would reach sleep()
    and raise) is skipped for the answer's Reset."""
    transport, _ = make([], Clock())
    answer = Response(429, {"retry-after": retry_after, "x-ratelimit-reset": str(1_000.0 + 2.5)}, b"")
    assert transport._retry_after(answer) == pytest.approx(2.5)


def test_an_answer_of_a_shorter_window_replaces_the_budget_of_a_longer_one():
    """Klaviyo counts fixed 1 s and 1 min windows: an answer of the same second as the current
    budget's or later is obeyed even when its window ends sooner (the burst window binding while
    the minute one still has room); only an answer of an earlier second is a late one."""
    clock = Clock()
    clock.now = 1_000.05
    transport = delta_transport(Session([]), clock)
    with transport._lock:
        read_dated(transport, "100", "5", http_date(1_000.0))   # the minute window: 100 left for 5 s
        clock.now = 1_000.3
        read_dated(transport, "0", "1", http_date(1_000.0))     # the burst window: none left this second
    assert transport._remaining == 0 and transport._reset_at <= 1_001.05 + 1e-6
