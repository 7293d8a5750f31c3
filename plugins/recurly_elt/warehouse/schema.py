"""Warehouse tables created once, safely, however many tasks start at once on a fresh warehouse.

Concurrent first runs (every resource of every site, or every destination's delivery, starting at
once) each take the warehouse's write lock first (SQLite: the queued writer lock and BEGIN
IMMEDIATE, `engine.write_transaction`; PostgreSQL: an advisory transaction lock), then create what
is still missing, so none fails with "database is locked" or a duplicate pg_type row. Tables an
older version created gain the columns declared since (added nullable, filled as rows next
change) and the indexes declared since (built from the rows already there). When everything
exists already: one catalogue read and no lock.
"""

from __future__ import annotations

import sqlalchemy as sa

from recurly_elt.warehouse.engine import write_transaction

# Serialises table creation on PostgreSQL (pg_advisory_xact_lock): concurrent CREATE TABLE IF NOT
# EXISTS of one name can still collide on the pg_type row. An arbitrary constant of this project.
_CREATE_LOCK = 0x7265_6375_726C_79


def ensure_tables(engine: sa.Engine, wanted: list[sa.Table]) -> None:
    """Create the tables of `wanted` that do not exist and add the columns and indexes they lack
    (idempotent)."""
    with engine.connect() as conn:
        if not missing(conn, wanted):
            return
    with write_transaction(engine) as conn:
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_CREATE_LOCK})")
        for metadata in {t.metadata for t in wanted}:
            metadata.create_all(conn, tables=[t for t in wanted if t.metadata is metadata])
        for table, what in missing(conn, wanted):  # tables exist now: what is left are columns, indexes
            if isinstance(what, sa.Index):
                what.create(conn, checkfirst=True)
            else:
                ddl = sa.schema.CreateColumn(table.c[what]).compile(dialect=conn.dialect)
                conn.exec_driver_sql(f'ALTER TABLE "{table.name}" ADD COLUMN {ddl}')


def missing(conn: sa.Connection, wanted: list[sa.Table]) -> list[tuple[sa.Table, str | sa.Index | None]]:
    """(table, None) for each table that does not exist, (table, column name) for each missing
    column, (table, index) for each declared index the table lacks."""
    inspector = sa.inspect(conn)
    existing = set(inspector.get_table_names())
    out: list[tuple[sa.Table, str | sa.Index | None]] = [(t, None) for t in wanted if t.name not in existing]
    for table in wanted:
        if table.name in existing:
            have = {c["name"] for c in inspector.get_columns(table.name)}
            out += [(table, c.name) for c in table.columns if c.name not in have]
            if table.indexes:
                indexed = {i["name"] for i in inspector.get_indexes(table.name)}
                out += [(table, i) for i in sorted(table.indexes, key=lambda i: i.name) if i.name not in indexed]
    return out
