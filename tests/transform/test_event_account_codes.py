"""Events written before their account was staged get its code once it is.

A one-time import up to day X reads objects by `updated_at` before X: an account updated after X
is not staged by it, though its older subscriptions and invoices are, so their events are written
without an account code. The daily run that stages the account rewrites only its own window's
events; the older ones must still get the code, or every destination keyed by it refuses them
("missing identity").
"""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from recurly_elt.transform import pipeline
from recurly_elt.warehouse.engine import create_engine_from_url

from .staging_data import DEFAULT_START, DEFAULT_UNTIL, load_objects, simulation

SITE = "sandbox"


def _codes(engine, account_ids: set[str]) -> dict[str, set]:
    with engine.connect() as c:
        rows = c.execute(sa.text("SELECT account_id, account_code FROM lifecycle_events WHERE site = :s"),
                         {"s": SITE}).all()
    out: dict[str, set] = {}
    for account_id, code in rows:
        if account_id in account_ids:
            out.setdefault(account_id, set()).add(code)
    return out


def test_events_of_an_account_staged_later_get_its_code(warehouse_url):
    engine = create_engine_from_url(warehouse_url)
    sim = simulation(accounts=60, until=DEFAULT_UNTIL)
    with_events = {s["account"]["id"] for s in sim.objects["subscriptions"].values()}
    late = sorted(with_events)[:5]  # updated after the import's end: not staged by it
    held = {k: v for k, v in sim.objects["accounts"].items() if k in late}
    first = {**sim.objects, "accounts": {k: v for k, v in sim.objects["accounts"].items() if k not in held}}
    load_objects(engine, SITE, first)
    pipeline.run(engine, DEFAULT_START, DEFAULT_UNTIL, health_days=0)  # the one-time import
    before = _codes(engine, set(late))
    assert set(before) == set(late) and all(codes == {None} for codes in before.values()), before

    load_objects(engine, SITE, {"accounts": held})  # the daily run stages them, and transforms its day
    pipeline.run(engine, DEFAULT_UNTIL, DEFAULT_UNTIL + timedelta(days=1), health_days=0)
    after = _codes(engine, set(late))
    engine.dispose()
    assert after == {k: {v["code"]} for k, v in held.items()}, after
