"""The delivery engine runs with CPython's cycle collector off and leaves it as it found it, also
when the delivery fails."""

from __future__ import annotations

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


def test_the_requests_a_delivery_made_are_freed_as_it_goes(monkeypatch, warehouse):
    """Each request leaves a reference cycle behind (the retry state holds the request and its
    body): with the automatic collection off they must still be collected round by round, not
    kept until the delivery ends."""
    from recurly_elt.destinations import ledger
    from recurly_elt.destinations.adapter import Request

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
    mapping, adapter = destination("braze")
    with running("braze") as server:
        result = delivery.deliver(warehouse, mapping, adapter, transport(server, adapter), run_id="freed",
                                  now=end_of(IMPORT_DAY), backfill=True)
    assert result.total("requests") >= 10 and len(alive) >= 10
    assert max(alive) <= delivery.IN_FLIGHT + 2, alive
