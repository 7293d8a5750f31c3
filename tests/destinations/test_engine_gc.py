"""The delivery engine runs with CPython's cycle collector off and leaves it as it found it, also
when the delivery fails; what it makes per request is freed by reference counting meanwhile."""

from __future__ import annotations

import contextlib
import gc

import pytest

from recurly_elt.destinations import engine as delivery

from .fakes_running import destination
from .warehouse_data import IMPORT_DAY, end_of


def _deliver_noting_gc(monkeypatch, warehouse, fail: bool = False) -> list[bool]:
    seen: list[bool] = []
    select = delivery.select

    def noting(*args, **kwargs):
        seen.append(gc.isenabled())
        if fail:
            raise RuntimeError("the warehouse went away")
        return select(*args, **kwargs)

    monkeypatch.setattr(delivery, "select", noting)
    mapping, adapter = destination("braze")
    delivery.deliver(warehouse, mapping, adapter, None, run_id="gc", dry_run=True, now=end_of(IMPORT_DAY))
    return seen


def test_the_cycle_collector_is_off_during_a_delivery_and_back_on_after(monkeypatch, warehouse):
    assert gc.isenabled()
    seen = _deliver_noting_gc(monkeypatch, warehouse)
    assert seen and not any(seen)  # every kind selected with it off
    assert gc.isenabled()


def test_a_failed_delivery_switches_it_back_on_too(monkeypatch, warehouse):
    with pytest.raises(RuntimeError, match="went away"):
        _deliver_noting_gc(monkeypatch, warehouse, fail=True)
    assert gc.isenabled()


def test_a_delivery_leaves_it_off_when_it_was_off(monkeypatch, warehouse):
    gc.disable()
    try:
        _deliver_noting_gc(monkeypatch, warehouse)
        assert not gc.isenabled()
    finally:
        gc.enable()


@pytest.mark.parametrize("faults", ["", "5xx=0.3,drop=0.1,lost=0.1,malformed=0.1"], ids=["clean", "faults"])
def test_the_requests_a_delivery_made_are_freed_as_it_goes(monkeypatch, warehouse, faults):
    """With the automatic collection off, nothing may hold a request in a reference cycle (the
    retry policy's tenacity state did, and so does an error kept with its frames): each request
    and its body are freed by reference counting once the answer is settled, not kept until the
    delivery ends. With faults and two attempts a request, some requests are retried, some give up
    (GaveUp) and some answers to events are lost (Unreadable: uncertain)."""
    from recurly_elt.destinations import ledger
    from recurly_elt.destinations.adapter import Request
    from recurly_elt.http_retry import RetryPolicy

    from .fakes_running import running, transport

    def requests_alive() -> int:
        # type() and not isinstance(): isinstance() asks a lazy proxy for its __class__, and
        # Airflow's lazy module attributes import on that (cloudpickle, absent here).
        return sum(1 for o in gc.get_objects() if type(o) is Request)

    gc.collect()  # what earlier tests of this process left for the automatic collector
    before = requests_alive()
    alive: list[int] = []
    mark = ledger.mark_pending_many

    def counting(*args, **kwargs):
        alive.append(requests_alive() - before)
        return mark(*args, **kwargs)

    monkeypatch.setattr(ledger, "mark_pending_many", counting)
    paused = delivery._cyclic_gc_paused

    @contextlib.contextmanager
    def noting_the_end():
        with paused():
            yield
            alive.append(requests_alive() - before)  # every answer settled, the collector still off

    monkeypatch.setattr(delivery, "_cyclic_gc_paused", noting_the_end)
    mapping, adapter = destination("braze")
    retry = RetryPolicy(max_attempts=2, base_seconds=0.001, max_backoff_seconds=0.002, read_timeout=20)
    with running("braze", faults=faults) as server:
        result = delivery.deliver(warehouse, mapping, adapter, transport(server, adapter, retry), run_id="freed",
                                  now=end_of(IMPORT_DAY), backfill=True)
    assert result.total("requests") >= 10 and len(alive) >= 10
    if faults:
        assert result.retries and result.total("failed") and result.uncertain_batches
    assert max(alive) <= delivery.IN_FLIGHT + 2, alive
    assert alive[-1] == 0, alive


class _Held:
    """What an attempt holds (a request and its body, say)."""


@pytest.mark.parametrize("outcomes", [["ok"], ["transient", "rate limited", "ok"], ["transient", "transient"],
                                      ["error"]], ids=["answered", "retried", "gave up", "raised"])
def test_a_retried_call_leaves_nothing_to_the_cycle_collector(outcomes):
    """What an attempt holds is freed by reference counting once the policy's call is over,
    whatever its end: tenacity keeps its next actions (bound methods of its Retrying) in the
    Retrying's own state, and an exception that went through it has frames holding its call state,
    whose outcome is that exception."""
    import weakref

    from recurly_elt.http_retry import RateLimited, RetryPolicy, Transient, detached

    policy = RetryPolicy(max_attempts=2, base_seconds=0.001, max_backoff_seconds=0.002, jitter_seconds=0.001)

    def run() -> weakref.ref:
        held = _Held()
        left = list(outcomes)

        def attempt():
            assert held is not None
            outcome = left.pop(0)
            if outcome == "transient":
                raise Transient("HTTP 503") from None
            if outcome == "rate limited":
                raise RateLimited(0.001, "HTTP 429") from None
            if outcome == "error":
                raise KeyError("not a retried failure")
            return "answer"

        try:  # on_wait holds it too, as the transport's holds the request
            assert policy.call(attempt, sleep=lambda seconds: None, on_wait=lambda *_: held) == "answer"
        except Transient:
            ended.append("gave up")  # the policy's own exception, raised without tenacity's frames
        except KeyError as exc:  # not the policy's: raised as it was; kept detached, as the engine keeps its errors
            kept.append(detached(exc))
        return weakref.ref(held)

    kept: list[BaseException] = []
    ended: list[str] = []
    gc.collect()
    gc.disable()
    try:
        held = run()
        assert held() is None, "what the attempt holds waits for the cycle collector"
    finally:
        gc.enable()
    assert len(kept) + len(ended) == (outcomes[-1] != "ok")
