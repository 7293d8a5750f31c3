"""Staged amounts are exact: Recurly's JSON numbers are read as decimals, stored as NUMERIC
(PostgreSQL) or decimal text (SQLite), and read by the transform as the same integer micro-units,
on SQLite and PostgreSQL."""

from __future__ import annotations

from decimal import Decimal

import pandas as pd
import pytest
import sqlalchemy as sa

from recurly_elt.staging import tables
from recurly_elt.staging.load import ensure_staging_tables, upsert_page
from recurly_elt.staging.rows import RecordRejected, converter
from recurly_elt.recurly.resources import get as get_resource
from recurly_elt.transform import money
from recurly_elt.warehouse.columnar import connect
from recurly_elt.warehouse.engine import create_engine_from_url, write_transaction

AMOUNTS = {"unit_amount": "0.005", "subtotal": "123456789.987654", "discount": "-0.000001",
           "tax": "99999999.999999", "amount": "20.025"}


def _record(id_: str, **amounts: str) -> bytes:
    fields = ", ".join(f'"{k}": {v}' for k, v in amounts.items())  # the numbers as JSON text, as sent
    return (f'{{"id": "{id_}", "object": "line_item", "currency": "USD", "type": "charge", '
            f'"tax_info": {{"rate": 0.0825}}, {fields}}}').encode()


def _stage(engine, raws: list[bytes]) -> None:
    convert = converter("line_items")
    rows = [convert.from_raw(raw, "acme", "2025-01-01 00:00:00.000000", None) for raw in raws]
    ensure_staging_tables(engine)
    with write_transaction(engine) as conn:
        upsert_page(conn, get_resource("line_items"), "acme", rows=rows)


def test_sub_cent_and_large_amounts_survive_staging_exactly(warehouse_url):
    engine = create_engine_from_url(warehouse_url)
    # li1 through the fast path; li2 through the plain path (its blank proration_rate sends it
    # there), with exponents and trailing zeros: both store the same decimal text.
    _stage(engine, [_record("li1", **AMOUNTS),
                    _record("li2", unit_amount="5e-3", subtotal="123456789.9876540", discount="-1E-6",
                            tax="99999999.999999", amount="20.0250", proration_rate='""')])
    table = tables.staging_table("line_items")
    cols = [table.c[name] for name in AMOUNTS]
    with engine.connect() as conn:
        got = conn.execute(sa.select(table.c.id, *cols).order_by(table.c.id)).all()
        stored = [sa.cast(c, sa.Text) if engine.dialect.name == "postgresql" else sa.func.typeof(c) for c in cols]
        kinds = conn.execute(sa.select(*stored).where(table.c.id == "li1")).one()
    expected = tuple(Decimal(v) for v in AMOUNTS.values())
    assert [tuple(r[1:]) for r in got] == [expected, expected]
    assert all(isinstance(v, Decimal) for r in got for v in r[1:])
    if engine.dialect.name == "sqlite":
        assert set(kinds) == {"text"}  # the decimal text itself, not the nearest double
    else:
        assert [Decimal(k) for k in kinds] == list(expected)

    # The transform's read: int64 micro-units equal to the decimal, with no float in between.
    with connect(engine) as db:
        frame = db.read(sa.select(table.c.id, *cols).where(table.c.site == "acme").order_by(table.c.id))
    for name, text in AMOUNTS.items():
        assert str(frame[name].dtype) == "Int64"
        assert money.micros(frame[name], what=name).tolist() == [int(Decimal(text) * money.MICRO)] * 2


def test_a_seventh_decimal_is_refused_not_rounded():
    convert = converter("line_items")
    with pytest.raises(RecordRejected, match="unit_amount: an amount with 7 decimals"):
        convert.from_raw(_record("li3", unit_amount="0.0050001"), "acme", "now", None)
    with pytest.raises(RecordRejected, match="subtotal: an amount outside NUMERIC"):
        convert.from_raw(_record("li4", subtotal="100000000000000"), "acme", "now", None)


def test_a_warehouse_created_with_numeric_amounts_reads_the_same_micro_units(sqlite_url):
    """A SQLite staging table an earlier version created stores amounts as REAL: read back exactly."""
    engine = create_engine_from_url(sqlite_url)
    with engine.begin() as conn:
        conn.exec_driver_sql('CREATE TABLE "legacy" (id TEXT, unit_amount NUMERIC(20, 6))')
        conn.exec_driver_sql("INSERT INTO legacy VALUES ('a', 0.005), ('b', 123456789.987654), ('c', 10), "
                             "('d', NULL), ('e', 0.00001)")
    legacy = sa.Table("legacy", sa.MetaData(), sa.Column("id", sa.Text),
                      sa.Column("unit_amount", tables.staging_table("line_items").c.unit_amount.type))
    with connect(engine) as db:
        frame = db.read(sa.select(legacy.c.id, legacy.c.unit_amount).order_by(legacy.c.id))
    assert frame["unit_amount"].tolist() == [5_000, 123_456_789_987_654, 10_000_000, pd.NA, 10]
