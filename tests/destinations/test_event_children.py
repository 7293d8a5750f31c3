"""An event kind's children (Klaviyo's Issued Invoice and its Line Items) are looked up for the
events being sent only, in chunks of bound values: the records equal those built from every child
row of the warehouse, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from recurly_elt.destinations import account_keys, ledger, records
from recurly_elt.destinations.records import select

from .fakes_running import destination
from .warehouse_data import IMPORT_DAY, end_of


def _line_items(engine) -> dict[str, list[str]]:
    """Charge line item ids per invoice, in id order, straight from staging."""
    out: dict[str, list[str]] = {}
    with engine.connect() as c:
        for invoice, item in c.execute(sa.text(
                "SELECT invoice_id, id FROM stg_line_items WHERE type = 'charge' ORDER BY invoice_id, id")):
            out.setdefault(invoice, []).append(item)
    return out


def test_invoice_events_carry_exactly_their_line_items_whatever_the_chunks(warehouse, monkeypatch):
    mapping, _ = destination("klaviyo")
    kind = mapping.kind("invoices")
    now = end_of(IMPORT_DAY - timedelta(days=1))
    ledger.ensure_ledger(warehouse)

    def records_with(chunk: int) -> list:
        monkeypatch.setattr(records, "CHILD_LOOKUP_CHUNK", chunk)
        with warehouse.connect() as conn:
            return select(conn, kind, now=now, max_age_days=mapping.event_max_age_days, backfill=True,
                          account_keys=account_keys.resolve(conn, mapping)).records

    whole = records_with(10**9)     # one lookup of every invoice being sent
    chunked = records_with(3)       # many lookups of three invoices each
    assert len(whole) > 3 and [(r.key, r.payload) for r in chunked] == [(r.key, r.payload) for r in whole]
    items = _line_items(warehouse)
    with_items = 0
    for r in whole:
        got = [li["id"] for li in r.payload["Line Items"]]
        assert got == items.get(r.payload["Invoice ID"], []), r.key
        with_items += bool(got)
    assert with_items > len(whole) // 2
