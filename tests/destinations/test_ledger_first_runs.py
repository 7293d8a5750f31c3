"""Every destination's first delivery at once on a fresh warehouse: the ledger tables are created
once, with no "database is locked" (SQLite) or duplicate pg_type row (PostgreSQL), and no retry."""

from __future__ import annotations

import sqlalchemy as sa

from recurly_elt.destinations.ledger import METADATA, ensure_ledger
from recurly_elt.warehouse.engine import create_engine_from_url

from at_once import failures_at_once

DELIVERIES = 5  # the five destinations' tasks of one run


def test_concurrent_first_deliveries_create_the_ledger_once(empty_warehouse_url):
    url = empty_warehouse_url
    failures = failures_at_once(url, {f"delivery {n}": ensure_ledger for n in range(1, DELIVERIES + 1)})
    assert not failures, "\n".join(failures)
    engine = create_engine_from_url(url)
    assert set(METADATA.tables) <= set(sa.inspect(engine).get_table_names())
    engine.dispose()
