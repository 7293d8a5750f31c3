"""The transport's pacing by rate headers, on a stub session and a stub clock: the requests a window
still allows are spread evenly over the time to Reset, requests in flight count against them, and
at Remaining 0 the next request waits for Reset."""

from __future__ import annotations

import threading

from recurly_elt.destinations.adapter import RateHeaders, Request
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


class Session:
    """Answers each request with the next (remaining, reset) of `answers`."""

    trust_env = False

    def __init__(self, answers, on_request=None):
        self.answers, self.on_request, self.sent = list(answers), on_request, 0

    def request(self, *args, **kwargs):
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
