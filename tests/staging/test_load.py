"""Bulk upserts into staging and snapshots, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import datetime

import sqlalchemy as sa

from recurly_elt.staging import tables
from recurly_elt.staging.checksum import table_checksum
from recurly_elt.staging.load import UpsertResult, upsert_records
from recurly_elt.warehouse.engine import create_engine_from_url


def _sub(id_: str, state: str = "active", updated: str = "2024-01-01T00:00:00Z", **extra) -> dict:
    return {"object": "subscription", "id": id_, "uuid": f"u{id_}", "state": state, "updated_at": updated,
            "created_at": "2023-12-01T00:00:00Z", "unit_amount": 10.5, "quantity": 2,
            "plan": {"id": "p1", "code": "gold", "name": "Gold"}, "account": {"id": "a1", "code": "c1"},
            "add_ons": [], **extra}


def _rows(engine, table):
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.select(table).order_by(*table.primary_key.columns))]


def test_insert_update_unchanged_counts_and_snapshots(warehouse_url):
    engine = create_engine_from_url(warehouse_url)
    first = upsert_records(engine, "subscriptions", "acme", [_sub("s1"), _sub("s2")], run_id="r1")
    assert first == UpsertResult(inserted=2, updated=0, unchanged=0, snapshots=2)

    # s1 changes state (snapshot column), s2 changes a non-snapshot field only, s3 is new
    second = upsert_records(engine, "subscriptions", "acme", [
        _sub("s1", state="canceled", updated="2024-01-02T00:00:00Z"),
        _sub("s2", updated="2024-01-02T00:00:00Z", collection_method="manual"),
        _sub("s3"),
    ], run_id="r2")
    assert second == UpsertResult(inserted=1, updated=2, unchanged=0, snapshots=2)

    again = upsert_records(engine, "subscriptions", "acme", [
        _sub("s1", state="canceled", updated="2024-01-02T00:00:00Z"),
        _sub("s3"),
    ], run_id="r3")
    assert again == UpsertResult(inserted=0, updated=0, unchanged=2, snapshots=0)

    stg = _rows(engine, tables.staging_table("subscriptions"))
    assert [(r["id"], r["state"], r["_run_id"]) for r in stg] == [
        ("s1", "canceled", "r2"), ("s2", "active", "r2"), ("s3", "active", "r2")]
    assert stg[0]["unit_amount"] == 10.5 and stg[0]["quantity"] == 2 and stg[0]["plan_code"] == "gold"
    snaps = _rows(engine, tables.snapshot_table("subscriptions"))
    assert [(r["id"], r["state"]) for r in snaps] == [("s1", "active"), ("s1", "canceled"), ("s2", "active"),
                                                      ("s3", "active")]


def test_sites_are_separate_keys_and_unknown_fields_stay_in_raw_json(warehouse_url):
    engine = create_engine_from_url(warehouse_url)
    upsert_records(engine, "subscriptions", "acme", [_sub("s1")])
    res = upsert_records(engine, "subscriptions", "globex", [_sub("s1", brand_new_field={"x": 1})])
    assert res.inserted == 1
    stg = _rows(engine, tables.staging_table("subscriptions"))
    assert [(r["site"], r["id"]) for r in stg] == [("acme", "s1"), ("globex", "s1")]
    assert json.loads(stg[1]["raw_json"])["brand_new_field"] == {"x": 1}


def test_checksum_ignores_row_order_and_load_metadata(warehouse_url, tmp_path):
    a = create_engine_from_url(warehouse_url)
    b = create_engine_from_url(f"sqlite:///{tmp_path / 'other.db'}")
    upsert_records(a, "subscriptions", "acme", [_sub("s1"), _sub("s2")], run_id="one")
    upsert_records(b, "subscriptions", "acme", [_sub("s2")], run_id="two")
    upsert_records(b, "subscriptions", "acme", [_sub("s1")], run_id="three")
    table = tables.staging_table("subscriptions")
    assert table_checksum(a, table) == table_checksum(b, table)
    upsert_records(b, "subscriptions", "acme", [_sub("s1", state="expired", updated="2024-02-01T00:00:00Z")])
    assert table_checksum(a, table) != table_checksum(b, table)


def test_an_older_updated_at_never_replaces_a_newer_row(warehouse_url):
    engine = create_engine_from_url(warehouse_url)
    newer = _sub("s1", updated_at="2025-01-05T00:00:00Z", state="canceled")
    older = _sub("s1", updated_at="2025-01-04T00:00:00Z", state="active")
    upsert_records(engine, "subscriptions", "acme", [newer], run_id="r1")
    stale = upsert_records(engine, "subscriptions", "acme", [older], run_id="r2")
    assert (stale.inserted, stale.updated, stale.unchanged) == (0, 0, 1)
    # in one batch, the later updated_at wins whatever the order
    both = upsert_records(engine, "subscriptions", "acme", [_sub("s2", updated_at="2025-01-05T00:00:00Z"),
                                                              _sub("s2", updated_at="2025-01-04T00:00:00Z")])
    assert both.inserted == 1
    with engine.connect() as conn:
        rows = dict(conn.execute(sa.text("SELECT id, updated_at FROM stg_subscriptions ORDER BY id")).all())
        state = conn.execute(sa.text("SELECT state FROM stg_subscriptions WHERE id = 's1'")).scalar_one()
    assert state == "canceled" and all(str(v).startswith("2025-01-05") for v in rows.values())


def test_a_run_log_of_an_older_version_gets_the_new_column(warehouse_url):
    from recurly_elt.staging.load import ensure_staging_tables
    from recurly_elt.staging.runlog import RUN_LOG

    engine = create_engine_from_url(warehouse_url)
    old = sa.Table("extract_run_log", sa.MetaData(), *(c.copy() for c in RUN_LOG.columns if c.name != "quarantined"))
    old.create(engine)
    with engine.begin() as conn:
        conn.execute(old.insert().values(run_id="r0", site="acme", resource="plans", status="success", attempts=1,
                                         pages=1, records=3, inserted=3, updated=0, unchanged=0, snapshots=3,
                                         requests=1, status_429=0, retries=0, seconds=0.1,
                                         started_at=datetime(2025, 1, 1)))
    ensure_staging_tables(engine)
    ensure_staging_tables(engine)  # idempotent
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT quarantined FROM extract_run_log WHERE run_id = 'r0'")).scalar_one() == 0


def test_a_staging_table_from_an_older_version_gains_the_columns_declared_since(warehouse_url):
    """A warehouse created before a column was declared (stg_line_items without
    unit_amount_decimal, say) gets it added, nullable, and the next upsert fills it."""
    from recurly_elt.staging.load import ensure_staging_tables

    engine = create_engine_from_url(warehouse_url)
    ensure_staging_tables(engine)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE stg_line_items")
        conn.exec_driver_sql("CREATE TABLE stg_line_items (site VARCHAR NOT NULL, id VARCHAR NOT NULL, "
                             "raw_json TEXT, PRIMARY KEY (site, id))")
    ensure_staging_tables(engine)
    have = {c["name"] for c in sa.inspect(engine).get_columns("stg_line_items")}
    assert {c.name for c in tables.staging_table("line_items").columns} <= have
    item = {"object": "line_item", "id": "li1", "uuid": "u1", "created_at": "2024-01-01T00:00:00Z",
            "updated_at": "2024-01-01T00:00:00Z", "unit_amount_decimal": "0.0125", "quantity": 1}
    upsert_records(engine, "line_items", "acme", [item], run_id="r1")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT unit_amount_decimal FROM stg_line_items").scalar() == "0.0125"
    engine.dispose()
