"""Rows from raw JSON (the compiled fast path) equal rows from objects (the plain path)."""

from __future__ import annotations

import json
from datetime import date, datetime

import pytest
import sqlalchemy as sa

from recurly_elt.extract.verify import SOURCE_NAMES
from recurly_elt.recurly.resources import RESOURCES
from recurly_elt.staging import tables
from recurly_elt.staging.load import upsert_records
from recurly_elt.staging.rows import converter, json_text, timestamp_text
from recurly_elt.warehouse.engine import create_engine_from_url


@pytest.fixture(scope="module")
def sandbox_objects() -> dict:
    from recurly_elt.sandbox.simulation import SiteSimulation

    return SiteSimulation("rows", seed=3, accounts=60, start_date=date(2025, 1, 1), until=date(2025, 4, 1)).objects


@pytest.mark.parametrize("resource", list(RESOURCES))
def test_fast_path_equals_plain_path_on_sandbox_objects(resource, sandbox_objects):
    convert = converter(resource)
    objects = list(sandbox_objects[SOURCE_NAMES.get(resource, resource)].values())
    assert objects
    for obj in objects:
        raw = json.dumps(obj).encode()
        row = convert.from_raw(raw, "acme", "2025-01-01 00:00:00.000000", "run")
        assert row == convert.from_object(obj, "acme", "2025-01-01 00:00:00.000000", "run", raw_json=raw.decode())
        assert len(row) == len(tables.staging_table(resource).columns)
        assert row[convert.index["raw_json"]] == raw.decode()  # the response's own bytes


def test_unexpected_types_missing_parents_and_new_fields():
    convert = converter("accounts")
    raw = json.dumps({
        "id": 123, "code": "c1", "state": "active", "has_live_subscription": True,
        "billing_info": None, "address": {"country": "DE"}, "custom_fields": [{"value": "b", "name": "a"}],
        "created_at": "2025-01-02T03:04:05Z", "updated_at": "2025-01-02T03:04:05.25+01:00",
        "brand_new_field": {"x": 1},
    }).encode()
    row = dict(zip(convert.columns, convert.from_raw(raw, "acme", "now", None)))
    assert row["id"] == "123"                       # a number where a string is declared: coerced
    assert row["card_exp_year"] is None and row["billing_info_id"] is None  # null parent
    assert row["country"] == "DE"
    assert row["custom_fields"] == '[{"name":"a","value":"b"}]'  # canonical JSON text
    assert row["created_at"] == "2025-01-02 03:04:05.000000"
    assert row["updated_at"] == "2025-01-02 02:04:05.250000"    # converted to UTC
    assert json.loads(row["raw_json"])["brand_new_field"] == {"x": 1}


def test_timestamp_and_json_text():
    assert timestamp_text("2025-01-02T03:04:05Z") == "2025-01-02 03:04:05.000000"
    assert timestamp_text("2025-01-02T03:04:05.123456Z") == "2025-01-02 03:04:05.123456"
    assert timestamp_text("2025-01-02T00:30:00-02:00") == "2025-01-02 02:30:00.000000"
    assert timestamp_text(None) is None and timestamp_text("") is None
    assert json_text({"b": [1, {"d": 1, "c": 2}], "a": "é"}) == '{"a":"é","b":[1,{"c":2,"d":1}]}'


def test_stored_timestamps_read_back_as_datetimes_and_compare_with_bound_datetimes(warehouse_url):
    engine = create_engine_from_url(warehouse_url)
    upsert_records(engine, "plans", "acme", [
        {"id": "p1", "code": "a", "created_at": "2025-01-02T00:00:00Z", "updated_at": "2025-01-02T00:00:00Z"},
        {"id": "p2", "code": "b", "created_at": "2025-01-01T23:59:59Z", "updated_at": "2025-01-01T23:59:59.5Z"},
    ])
    table = tables.staging_table("plans")
    with engine.connect() as conn:
        stamps = dict(conn.execute(sa.select(table.c.id, table.c.updated_at)).all())
        # A record at exactly midnight is inside a window that starts at midnight (text order on SQLite).
        inside = conn.execute(sa.select(table.c.id).where(table.c.updated_at >= datetime(2025, 1, 2))).scalars().all()
    assert stamps == {"p1": datetime(2025, 1, 2), "p2": datetime(2025, 1, 1, 23, 59, 59, 500000)}
    assert inside == ["p1"]


# -- the record rules: both paths refuse the same records, for the same reasons ------------------
_VALID = {"id": "a1", "code": "c1", "created_at": "2025-01-02T03:04:05Z", "updated_at": "2025-01-02T03:04:05Z"}


@pytest.mark.parametrize(("change", "field", "reason"), [
    ({"has_live_subscription": "false"}, "has_live_subscription", "expected true or false"),
    ({"has_live_subscription": 1}, "has_live_subscription", "expected true or false"),
    ({"billing_info": {"payment_method": {"exp_year": 2.7}}}, "billing_info.payment_method.exp_year", "not an integer"),
    ({"billing_info": {"payment_method": {"exp_year": 10**20}}}, "billing_info.payment_method.exp_year", "64-bit"),
    ({"billing_info": {"payment_method": {"exp_year": True}}}, "billing_info.payment_method.exp_year",
     "got a boolean"),
    ({"billing_info": "none"}, "billing_info", "expected an object, got a string"),
    ({"created_at": "2026-02-30T00:00:00Z"}, "created_at", "no such date"),
    ({"created_at": "2025-01-01T24:00:00Z"}, "created_at", "no such date"),
    ({"created_at": "2025-W01-1T00:00:00Z"}, "created_at", "calendar date"),
    ({"created_at": "2025-01-01T00:00:00"}, "created_at", "without a time zone"),
    ({"created_at": "yesterday"}, "created_at", "not a valid ISO-8601"),
    ({"created_at": 1735689600}, "created_at", "got a number"),
    ({"company": "a\u0000b"}, "company", "NUL"),
    ({"company": "x" * 100_001}, "company", "100,001 characters"),
    ({"custom_fields": [{"name": "\ud800"}]}, "custom_fields[0].name", "lone surrogate"),  # declared json
    # fields no declaration reads: raw_json keeps them, so the same text rule, by JSON path
    ({"undeclared": {"deep": ["ok", "a\u0000b"]}}, "undeclared.deep[1]", "NUL"),
    ({"undeclared": "\udc00"}, "undeclared", "lone surrogate"),
    ({"undeclared": {"na\u0000me": 1}}, 'undeclared."na\\u0000me"', "the field name contains a NUL"),
    ({"id": ""}, "id", "an empty id"),
    ({"id": None}, "id", "no id"),
])
def test_both_paths_refuse_a_bad_value_naming_field_and_reason(change, field, reason):
    from recurly_elt.staging.rows import RecordRejected

    convert = converter("accounts")
    record = {**_VALID, **change}
    raw = json.dumps(record).encode()  # ASCII escapes: NUL and surrogates as \\u escapes
    for attempt in (lambda: convert.from_raw(raw, "acme", "now", None),
                    lambda: convert.from_raw(raw, "acme", "now", None, may_hold_nul=b"\\u0000" in raw),
                    lambda: convert.from_object(record, "acme", "now", None)):
        with pytest.raises(RecordRejected) as info:
            attempt()
        [problem] = info.value.problems
        assert problem.field == field and reason in problem.reason, problem
        assert info.value.record_id == (record["id"] or None)


@pytest.mark.parametrize(("change", "column", "stored"), [
    ({"billing_info": {"payment_method": {"exp_year": 2030.0}}}, "card_exp_year", 2030),  # no fraction: exact
    ({"id": 123}, "id", "123"),
    ({"billing_info": None}, "card_exp_year", None),
    ({"created_at": "2025-01-02T00:30:00-02:00"}, "created_at", "2025-01-02 02:30:00.000000"),
    ({"company": "Cafe\u0301 \U0001F600"}, "company", "Cafe\u0301 \U0001F600"),
    ({"company": "\U0001F600", "undeclared": ["\U0001F600"]}, "company", "\U0001F600"),  # pairs, as escapes
])
def test_values_the_rules_accept_are_stored_exactly(change, column, stored):
    convert = converter("accounts")
    record = {**_VALID, **change}
    raw = json.dumps(record).encode()
    fast = convert.from_raw(raw, "acme", "now", None)
    assert fast == convert.from_object(record, "acme", "now", None, raw_json=raw.decode())
    assert dict(zip(convert.columns, fast))[column] == stored


def test_blank_text_in_a_typed_field_is_no_value_on_both_paths():
    """Recurly sends unset text as "": a blank timestamp, number, integer or boolean is NULL, the raw
    JSON keeps it, and a string column keeps "" as sent."""
    convert = converter("accounts")
    record = {**_VALID, "created_at": "", "company": "", "has_live_subscription": "",
              "billing_info": {"payment_method": {"exp_year": ""}}}
    raw = json.dumps(record).encode()
    columns = convert.columns
    for row in (convert.from_raw(raw, "acme", "now", None), convert.from_object(record, "acme", "now", None)):
        values = dict(zip(columns, row))
        assert values["created_at"] is None and values["has_live_subscription"] is None
        assert values["card_exp_year"] is None
        assert values["company"] == ""
        assert '"created_at": ""' in values["raw_json"] or '"created_at":""' in values["raw_json"]
