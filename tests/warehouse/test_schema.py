"""Tables created by an older version gain the indexes declared since, on SQLite and PostgreSQL."""

from __future__ import annotations

import sqlalchemy as sa

from recurly_elt.staging.load import ensure_staging_tables
from recurly_elt.staging.tables import staging_table
from recurly_elt.transform import tables as transform_tables
from recurly_elt.warehouse.engine import create_engine_from_url
from recurly_elt.warehouse.schema import missing


def _indexes(engine, table: str) -> dict[str, list[str]]:
    return {i["name"]: i["column_names"] for i in sa.inspect(engine).get_indexes(table)}


def _recreate_without_indexes(engine, table: sa.Table, row: dict) -> None:
    """The table as an older version made it: its columns and key, no secondary index, one row."""
    old = sa.Table(table.name, sa.MetaData(), *(c.copy() for c in table.columns), **table.dialect_kwargs)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"DROP TABLE {table.name}")
    old.create(engine)
    with engine.begin() as conn:
        conn.execute(old.insert().values(**row))
    assert _indexes(engine, table.name) == {}


def test_a_line_items_table_of_an_older_version_gains_the_invoice_index(warehouse_url):
    engine = create_engine_from_url(warehouse_url)
    ensure_staging_tables(engine)
    table = staging_table("line_items")
    _recreate_without_indexes(engine, table, {"site": "acme", "id": "li1", "invoice_id": "inv1", "raw_json": "{}",
                                              "_loaded_at": sa.func.now()})
    ensure_staging_tables(engine)
    assert _indexes(engine, "stg_line_items") == {"ix_stg_line_items_invoice_id_id": ["site", "invoice_id", "id"]}
    ensure_staging_tables(engine)  # idempotent: nothing is missing any more
    with engine.connect() as conn:
        assert missing(conn, [table]) == []
        assert conn.exec_driver_sql("SELECT id FROM stg_line_items WHERE site = 'acme' AND invoice_id = 'inv1'"
                                    ).scalar() == "li1"
    engine.dispose()


def test_a_lifecycle_events_table_of_an_older_version_gains_the_time_index(warehouse_url):
    engine = create_engine_from_url(warehouse_url)
    transform_tables.create_transform_tables(engine)
    table = transform_tables.LIFECYCLE_EVENTS
    _recreate_without_indexes(engine, table, {"site": "acme", "occurred_at": sa.func.now(), "event_id": "e1",
                                              "event_name": "Recurly New Subscription"})
    with engine.connect() as conn:
        assert [what.name for _, what in missing(conn, [table])] == ["ix_lifecycle_events_occurred_at_event_id"]
    transform_tables.create_transform_tables(engine)
    transform_tables.create_transform_tables(engine)
    assert _indexes(engine, "lifecycle_events") == {"ix_lifecycle_events_occurred_at_event_id": ["occurred_at", "event_id"]}
    with engine.connect() as conn:
        assert missing(conn, transform_tables.METADATA.sorted_tables) == []
        assert conn.exec_driver_sql("SELECT COUNT(*) FROM lifecycle_events").scalar() == 1
    engine.dispose()
