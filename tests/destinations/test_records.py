"""records.select on a small source, on SQLite and PostgreSQL: rows read by position map to the
payloads, keys, identities, groups and event times they did by column name; the payload hash is the
same bytes for the same payload as in every earlier version (the ledger compares it across runs:
a changed hash would resend every object); a row that cannot be mapped is set aside naming the
column and the value."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from decimal import Decimal

import pytest
import sqlalchemy as sa

from recurly_elt.destinations.account_keys import AccountKeys
from recurly_elt.destinations.mapping import CustomField, Field, Kind
from recurly_elt.destinations.records import _timestamp, iso_utc, payload_hash, select

NOW = datetime(2025, 9, 30)

EVENT = {"name": "Recurly Successful Payment", "time": "2025-09-01T10:00:00Z", "external_id": "acct-1",
         "properties": {"amount": Decimal("49.00"), "currency": "USD", "detail": None, "site": "acme",
                        "Line Items": [{"id": "li1", "quantity": 2, "unit_amount": Decimal("-0.10")}]}}


@pytest.mark.parametrize("payload, digest", [
    ({}, "2afb9b83f9314e5d029766197f539792"),
    (EVENT, "d81936c0f8bf25be3dd25d0e51f7b944"),
    ({"b": "ünïcode \u2028 \"quoted\"", "a": [1, 2.5, True, None], "c": {"z": 1, "y": {}}},
     "5b8f9e22d813070c3c8e190dd928fbbb"),
])
def test_the_payload_hash_is_the_same_as_in_earlier_versions(payload, digest):
    assert payload_hash(payload) == digest  # the digests of the code before this module read rows by position


@pytest.mark.parametrize("text", [
    "2025-09-01 10:00:00", "2025-09-01T10:00:00", "2025-09-01 10:00:00.000000", "2025-09-01 10:00:00.5",
    "2025-09-01T23:59:59.999999", "2025-09-01 10:00:00Z", "2025-09-01 10:00:00+02:00",
    "2025-09-01 10:00:00.123-05:00", "2025-09-01", "2025-09-01 10:00", "20250901T100000",
])
def test_timestamp_text_is_what_formatting_the_parsed_time_gives(text):
    assert iso_utc(text) == _timestamp(text).isoformat(timespec="seconds") + "Z"


@pytest.mark.parametrize("text", ["2025-09-01 10:00:60", "2025-13-01 10:00:00", "2025-09-01 1a:00:00"])
def test_timestamp_text_is_still_checked(text):
    with pytest.raises(ValueError):
        iso_utc(text)


def _source(url: str) -> sa.Engine:
    engine = sa.create_engine(url)
    meta = sa.MetaData()
    table = sa.Table("src", meta, sa.Column("site", sa.Text), sa.Column("event_id", sa.Text),
                     sa.Column("account_code", sa.Text), sa.Column("event_name", sa.Text),
                     sa.Column("occurred_at", sa.DateTime), sa.Column("amount", sa.Text),
                     sa.Column("quantity", sa.Integer), sa.Column("custom", sa.Text))
    meta.create_all(engine)
    tenant = json.dumps([{"name": "tenant", "value": "t-9"}])
    rows = [("acme", "e1", "a1", "Paid", datetime(2025, 9, 1, 10, 0, 0), "49.005", 2, tenant),
            ("acme", "e2", "a2", "Paid", datetime(2025, 9, 2, 11, 30, 15, 250000), None, None, None),
            ("acme", "e3", "a1", "Refund", datetime(2025, 6, 1, 8, 0, 0), "-1", 1, None),
            ("acme", "e4", "a3", "Paid", datetime(2025, 9, 3), "not money", 1, None),
            ("acme", None, "a3", "Paid", datetime(2025, 9, 3), "1", 1, None),
            ("acme", "e1", "a4", "Paid", datetime(2025, 9, 4), "1", 1, None),
            ("acme", "e5", "  ", "Paid", datetime(2025, 9, 4), "1", 1, None)]
    with engine.begin() as c:
        c.execute(table.insert(), [dict(zip(table.columns.keys(), r)) for r in rows])
    return engine


def test_select_maps_event_rows_by_their_columns(warehouse_url):
    kind = Kind(name="events", type="event", key="event_id", event_name="event_name", time="occurred_at",
                source="SELECT * FROM src ORDER BY occurred_at",
                event_names={"Paid": "Successful Payment", "Refund": "Refunded Payment"},
                fields=(Field("amount", "amount", "money"), Field("quantity", "quantity", "integer"),
                        Field("tenant", "tenant"), Field("site", "site")),
                identity=(Field("external_id", "account_key"),), group_by=("account_key", "site"),
                custom_fields=(CustomField("tenant", "custom", "tenant", otherwise="account_key"),))
    engine = _source(warehouse_url)
    try:
        with engine.connect() as conn:
            chosen = select(conn, kind, now=NOW, max_age_days=30, backfill=True,
                            account_keys=AccountKeys("site_account_code", ":"))
    finally:
        engine.dispose()
    by_key = {r.key: r for r in chosen.records}
    assert chosen.considered == 7 and sorted(by_key) == ["e1", "e2", "e3"]
    e1, e2, e3 = by_key["e1"], by_key["e2"], by_key["e3"]
    assert e1.payload == {"amount": Decimal("49.01"), "quantity": 2, "tenant": "t-9", "site": "acme"}
    assert e2.payload == {"amount": None, "quantity": None, "tenant": "acme:a2", "site": "acme"}  # the custom field's fallback
    assert (e1.identity, e1.group, e1.name) == ({"external_id": "acme:a1"}, ("acme:a1", "acme"), "Successful Payment")
    assert (e2.time, e2.time_text) == (datetime(2025, 9, 2, 11, 30, 15, 250000), "2025-09-02T11:30:15Z")
    assert (e3.name, e3.backfill, e1.backfill) == ("Refunded Payment", True, False)
    for r in chosen.records:
        assert r.time_text == iso_utc(r.time)
        assert r.hash == payload_hash({"name": r.name, "time": r.time_text, "properties": r.payload, **r.identity})
    reasons = sorted(s.reason for s in chosen.set_aside)
    assert reasons == sorted([
        "unmappable row: column amount value 'not money' is not a valid money: "
        "[<class 'decimal.ConversionSyntax'>]",
        "missing key: column event_id is empty",
        "duplicate key: column event_id = 'e1' is also the key of an earlier row (site=acme, event_id=e1); "
        "this one is not sent",
        "missing identity external_id for event Successful Payment",
    ]), reasons
    assert {s.key for s in chosen.set_aside} == {"e4", "(no event_id) site=acme, event_id=None", "e1 (site=acme, event_id=e1)",
                                                 "e5"}


def test_event_times_with_a_zone_are_converted_to_utc():
    moment = datetime(2025, 9, 1, 12, 0, tzinfo=timezone.utc)
    assert iso_utc(moment.astimezone(timezone.utc).replace(tzinfo=None)) == "2025-09-01T12:00:00Z"
    assert iso_utc("2025-09-01 14:00:00+02:00") == "2025-09-01T12:00:00Z"
