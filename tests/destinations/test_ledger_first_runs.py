"""Every destination's first delivery at once on a fresh warehouse: the ledger tables are created
once, with no "database is locked" (SQLite) or duplicate pg_type row (PostgreSQL), and no retry."""

from __future__ import annotations

import threading

import sqlalchemy as sa

from recurly_elt.destinations.ledger import METADATA, ensure_ledger
from recurly_elt.warehouse.engine import create_engine_from_url

DELIVERIES = 5  # the five destinations' tasks of one run


def test_concurrent_first_deliveries_create_the_ledger_once(empty_warehouse_url):
    url = empty_warehouse_url
    start = threading.Barrier(DELIVERIES)
    errors: list[BaseException] = []

    def first_delivery() -> None:
        engine = create_engine_from_url(url)  # one engine per task, as separate task processes have
        try:
            start.wait()
            ensure_ledger(engine)
        except BaseException as exc:  # noqa: BLE001 - collected and reported below
            errors.append(exc)
        finally:
            engine.dispose()

    threads = [threading.Thread(target=first_delivery) for _ in range(DELIVERIES)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    engine = create_engine_from_url(url)
    assert set(METADATA.tables) <= set(sa.inspect(engine).get_table_names())
    engine.dispose()
