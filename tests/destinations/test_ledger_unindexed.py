"""A run killed after settling its requests but before moving their delivered rows into
load_delivered (ledger.py, "Delivered rows"): the next run moves them first and sends nothing
again, on SQLite and PostgreSQL, also for Braze events, which Braze never deduplicates."""

from __future__ import annotations

import sqlalchemy as sa

from recurly_elt.destinations import engine as delivery

from .fakes_running import destination, running, state, transport
from .warehouse_data import IMPORT_DAY, end_of


def _count(warehouse, sql: str) -> int:
    with warehouse.connect() as c:
        return int(c.execute(sa.text(sql)).scalar() or 0)


def test_delivered_rows_left_in_the_requests_are_moved_by_the_next_run(monkeypatch, warehouse):
    mapping, adapter = destination("braze")
    with running("braze") as server:
        def deliver(run_id):
            return delivery.deliver(warehouse, mapping, adapter, transport(server, adapter), run_id=run_id,
                                    now=end_of(IMPORT_DAY), backfill=True)

        with monkeypatch.context() as patched:  # killed before any delivered row is moved
            patched.setattr(delivery._Run, "index", lambda self, at_least=1: None)
            first = deliver("killed")
        assert first.total("sent") > 500 and first.kinds["events"].sent > 0
        assert _count(warehouse, "SELECT COUNT(*) FROM load_delivered") == 0
        assert _count(warehouse, "SELECT COUNT(*) FROM load_requests WHERE unindexed IS NOT NULL") == first.total("requests")
        received = state(server)["server"]["requests"]

        dry = delivery.deliver(warehouse, mapping, adapter, None, run_id="dry", dry_run=True,
                               now=end_of(IMPORT_DAY), backfill=True)
        assert dry.total("creates") == dry.total("events") == 0  # the dry run reads the moved rows too
        second = deliver("next")
        fake = state(server)

    assert second.total("requests") == 0 and fake["server"]["requests"] == received
    assert fake["duplicate_events"] == 0
    assert _count(warehouse, "SELECT COUNT(*) FROM load_delivered WHERE destination = 'braze'") == first.total("sent")
    assert _count(warehouse, "SELECT COUNT(*) FROM load_delivered WHERE run_id = 'killed' AND NOT uncertain") \
        == first.total("sent")
    assert _count(warehouse, "SELECT COUNT(*) FROM load_requests WHERE unindexed IS NOT NULL") == 0


def test_a_run_moves_its_delivered_rows_in_bulk_as_it_goes(monkeypatch, warehouse):
    """Moved once INDEX_EVERY_ROWS wait, and the rest at the end of each kind: nothing is left in
    the requests after a run that ends normally."""
    monkeypatch.setattr(delivery, "INDEX_EVERY_ROWS", 100)
    moves: list[int] = []
    index = delivery.ledger.index_delivered

    def counting(conn, destination, batches, **kw):
        moves.append(sum(len(b.rows) for b in batches))
        return index(conn, destination, batches, **kw)

    monkeypatch.setattr(delivery.ledger, "index_delivered", counting)
    mapping, adapter = destination("braze")
    with running("braze") as server:
        result = delivery.deliver(warehouse, mapping, adapter, transport(server, adapter), run_id="bulk",
                                  now=end_of(IMPORT_DAY), backfill=True)
    assert sum(moves) == result.total("sent") and len(moves) > len(mapping.kinds)
    # in bulk, not request by request: one move per 100 rows at most, plus one at each kind's end
    assert len(moves) <= result.total("sent") // 100 + len(mapping.kinds) < result.total("requests")
    assert _count(warehouse, "SELECT COUNT(*) FROM load_requests WHERE unindexed IS NOT NULL") == 0
    assert _count(warehouse, "SELECT COUNT(*) FROM load_delivered") == result.total("sent")


def test_a_failing_move_leaves_no_request_pending_that_was_never_sent(monkeypatch, warehouse):
    """The bulk move is a write of its own that can fail (a lock timeout, a lost connection). It
    runs before the next requests are marked pending, never between their pending commit and their
    sending: a Braze events batch left pending is marked uncertain and never sent again by the next
    run (at most once), so one that never left would be lost."""
    monkeypatch.setattr(delivery, "INDEX_EVERY_ROWS", 1)
    index = delivery.ledger.index_delivered
    calls: list[int] = []

    def failing_once_events_flow(conn, destination, batches, **kw):
        calls.append(1)
        if len(calls) == 3:  # mid-way through the kinds: requests settled, more about to start
            raise RuntimeError("the warehouse went away")
        return index(conn, destination, batches, **kw)

    monkeypatch.setattr(delivery.ledger, "index_delivered", failing_once_events_flow)
    mapping, adapter = destination("braze")
    with running("braze") as server:
        try:
            delivery.deliver(warehouse, mapping, adapter, transport(server, adapter), run_id="failed",
                             now=end_of(IMPORT_DAY), backfill=True)
        except RuntimeError as exc:
            assert "went away" in str(exc)
        else:
            raise AssertionError("the failing move did not stop the run")
        received = state(server)["server"]["requests"]
    assert len(calls) == 3
    # every request marked pending was sent: pending rows = requests the fake received and not settled
    pending = _count(warehouse, "SELECT COUNT(*) FROM load_requests WHERE status = 'pending'")
    settled = _count(warehouse, "SELECT COUNT(*) FROM load_requests WHERE status <> 'pending'")
    assert pending + settled == received, (pending, settled, received)
