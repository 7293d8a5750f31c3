"""A hostile Recurly at the record level: wrong types, bad dates, NUL, surrogates, huge and odd
strings, missing and empty ids, null objects, stale duplicates.

Through the real extraction entry point on SQLite and PostgreSQL: every refused record is in
`extract_quarantine` with its field and reason and counted in the run log, every other record is
staged exactly as the sandbox holds it, no value is changed silently, and the key is nowhere.
"""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from recurly_elt.extract.verify import compare_with_source
from recurly_elt.sandbox.hostile import ODD_UNICODE, UNDECLARED_PATHS, WRONG_VALUES
from recurly_elt.staging import quarantine
from recurly_elt.staging.tables import staging_table

from extract_helpers import sim_objects
from hostile_helpers import assert_no_key, run_scenario


def _quarantine(engine) -> list[dict]:
    with engine.connect() as conn:
        return quarantine.read(conn, "acme", "accounts")


def _planted(sandbox):
    return sandbox.hostile["acme"].planted


def test_wrong_values_are_quarantined_with_field_and_reason_the_rest_staged(sandbox, warehouse_url, caplog):
    outcome = run_scenario(sandbox, warehouse_url, "wrong_values", caplog)
    assert outcome.error is None, outcome.error
    planted = _planted(sandbox)
    assert len(planted) == len(WRONG_VALUES)
    rows = _quarantine(outcome.engine)
    by_field = {(r["record_id"], r["field"]): r for r in rows}
    for plant in planted:
        row = by_field.get((plant.record_id, plant.field))
        assert row is not None, plant
        assert row["reason"] and row["raw_value"] and row["run_id"] == "hostile" and row["resolved_at"] is None
    assert len({r["record_key"] for r in rows}) == len(planted)  # one record each, every one quarantined
    # counted, and everything else staged exactly as the source has it
    assert outcome.run_log["quarantined"] == outcome.result["quarantined"] == len(planted)
    assert outcome.run_log["status"] == "success"
    diff = compare_with_source(outcome.engine, "acme", sim_objects(sandbox), ["accounts"])["accounts"]
    assert set(diff.missing) == {p.source_id for p in planted} and not diff.extra and not diff.different
    assert_no_key(outcome)


@pytest.mark.parametrize(("field", "value", "reason"), [
    ("billing_info.payment_method.exp_month", 3.5, "3.5 is not an integer"),
    ("billing_info.payment_method.exp_year", 10**20, "64-bit"),
    ("billing_info.payment_method.exp_month", "3", "expected an integer, got a string"),
    ("has_live_subscription", "false", "expected true or false, got a string"),
    ("has_active_subscription", 0, "expected true or false, got a number"),
    ("created_at", "yesterday", "not a valid ISO-8601 timestamp"),
    ("created_at", 1735689600, "expected an ISO-8601 timestamp string, got a number"),
    ("updated_at", "2026-02-30T00:00:00Z", "no such date"),
    ("address", "Main Street 1", "expected an object, got a string"),
    ("company", "Acme\u0000Corp", "NUL"),
    ("first_name", "\ud800", "lone surrogate"),
    ("last_name", "x" * 1_000_000, "1,000,000 characters"),
])
def test_each_rule_says_why(sandbox, warehouse_url, caplog, field, value, reason):
    if warehouse_url.startswith("postgres") and field not in ("company", "first_name"):
        pytest.skip("the warehouse-independent rules run once; NUL and surrogates on both")
    outcome = run_scenario(sandbox, warehouse_url, "wrong_values", caplog)
    source_id = next(p.source_id for p in _planted(sandbox) if p.field == field and p.what in
                     [w for f, v, w in WRONG_VALUES if f == field and v == value])
    row = next(r for r in _quarantine(outcome.engine) if r["record_id"] == source_id)
    assert row["field"] == field and reason in row["reason"], row
    assert f"\"id\":\"{source_id}\"" in row["raw_json"]  # the whole record (cut at 100,000 characters)
    assert f"record {source_id!r}" in outcome.log and field in outcome.log  # the warning names both


def test_a_growing_quarantine_fails_the_check_and_a_fixed_record_resolves(sandbox, warehouse_url, caplog):
    outcome = run_scenario(sandbox, warehouse_url, "wrong_values", caplog)
    with outcome.engine.connect() as conn:
        with pytest.raises(quarantine.QuarantineGrew, match=r"16 record\(s\) quarantined by run 'hostile'"):
            quarantine.check(conn, "hostile")
    again = run_scenario(sandbox, warehouse_url, None, caplog, run_id="again")  # same answers: no growth
    with again.engine.connect() as conn:
        assert quarantine.check(conn, "again") == 0
    assert again.run_log["quarantined"] == len(WRONG_VALUES)
    rows = _quarantine(again.engine)
    assert {r["times_seen"] for r in rows} == {2} and {r["last_run_id"] for r in rows} == {"again"}

    sandbox.set_hostile("acme", None)  # the API now answers the records valid
    fixed = run_scenario(sandbox, warehouse_url, None, caplog, run_id="fixed")
    assert fixed.result["quarantined"] == 0
    assert all(r["resolved_at"] is not None for r in _quarantine(fixed.engine) if r["record_id"] is not None)
    diff = compare_with_source(fixed.engine, "acme", sim_objects(sandbox), ["accounts"])["accounts"]
    assert diff.equal, diff.summary()


def test_odd_but_valid_unicode_is_staged_unchanged(sandbox, warehouse_url, caplog):
    outcome = run_scenario(sandbox, warehouse_url, "odd_unicode", caplog)
    assert outcome.error is None and outcome.result["quarantined"] == 0
    record_id = _planted(sandbox)[0].record_id
    table = staging_table("accounts")
    with outcome.engine.connect() as conn:
        row = conn.execute(sa.select(table).where(table.c.id == record_id)).one()._mapping
    for field, value in ODD_UNICODE:
        assert row[field] == value, field
        assert json.loads(row["raw_json"])[field] == value


def test_null_records_missing_and_empty_ids(sandbox, warehouse_url, caplog):
    outcome = run_scenario(sandbox, warehouse_url, "nulls_and_missing_ids", caplog)
    assert outcome.error is None
    rows = _quarantine(outcome.engine)
    reasons = sorted((r["record_id"], r["field"], r["reason"]) for r in rows)
    assert reasons == sorted([
        (None, "id", "no id: the record cannot be keyed"),
        (None, "id", "an empty id: the record cannot be keyed"),
        (None, "id", "an empty id: the record cannot be keyed"),  # two records with id "": two rows
        (None, "", "the record is not a JSON object"),
    ])
    assert outcome.run_log["quarantined"] == 4
    kept = next(p for p in _planted(sandbox) if p.field == "billing_info").record_id
    table = staging_table("accounts")
    with outcome.engine.connect() as conn:
        row = conn.execute(sa.select(table).where(table.c.id == kept)).one()._mapping
    assert row["billing_info_id"] is None and row["card_exp_year"] is None and row["country"] is None
    diff = compare_with_source(outcome.engine, "acme", sim_objects(sandbox), ["accounts"])["accounts"]
    missing = {p.source_id for p in _planted(sandbox) if p.field == "id"}
    assert set(diff.missing) == missing and diff.different == [kept]  # kept with its null objects


def test_a_stale_copy_never_replaces_the_newer_version(sandbox, warehouse_url, caplog):
    outcome = run_scenario(sandbox, warehouse_url, "stale_duplicates", caplog)
    assert outcome.error is None
    assert len(_planted(sandbox)) == 1 + (outcome.result["pages"] > 1)
    table = staging_table("accounts")
    with outcome.engine.connect() as conn:
        emails = conn.execute(sa.select(table.c.email).where(table.c.email == "stale-copy@example.com")).all()
    assert emails == []
    diff = compare_with_source(outcome.engine, "acme", sim_objects(sandbox), ["accounts"])["accounts"]
    assert diff.equal, diff.summary()


def test_hostile_records_in_every_list_under_faults(sandbox, warehouse_url, caplog):
    """5 % of every list's records hostile, with 30 % 5xx, 10 % drops and 5 % malformed bodies:
    every valid record staged as the source has it (stale copies never win), every refused one
    quarantined with the field the sandbox broke."""
    from recurly_elt.extract.verify import SOURCE_NAMES
    from recurly_elt.sandbox.faults import FaultSpec
    from recurly_elt.warehouse.engine import create_engine_from_url

    from extract_helpers import extract_all

    active = sandbox.set_hostile("acme", "hostile_records=0.05")
    sandbox.sites_by_name["acme"].set_faults(FaultSpec.parse("5xx=0.3,drop=0.1,malformed=0.05"))
    engine = create_engine_from_url(warehouse_url)
    results = extract_all(sandbox, engine, run_id="hostile-bulk")
    staging_name = {source: name for name, source in SOURCE_NAMES.items()}
    refused = {(staging_name.get(p.resource, p.resource), p.record_id): p.field
               for p in active.planted if p.what != "stale"}
    assert len(refused) > 50 and any(p.what == "stale" for p in active.planted)
    with engine.connect() as conn:
        rows = {(r["resource"], r["record_id"]): r for r in quarantine.read(conn, "acme")}
    assert {key: row["field"] for key, row in rows.items()} == refused
    assert sum(r.quarantined for r in results.values()) == len(refused)
    for name, diff in compare_with_source(engine, "acme", sim_objects(sandbox)).items():
        assert set(diff.missing) == {i for r, i in refused if r == name}, name
        assert not diff.extra and not diff.different, (name, diff.summary())


def test_an_older_version_in_a_later_read_never_replaces_the_staged_one(sandbox, warehouse_url, caplog):
    first = run_scenario(sandbox, warehouse_url, None, caplog, run_id="first")
    assert first.error is None
    later = run_scenario(sandbox, warehouse_url, "stale_versions", caplog, run_id="later")
    assert later.error is None and _planted(sandbox)
    assert later.result["updated"] == 0 and later.result["inserted"] == 0 and later.result["snapshots"] == 0
    diff = compare_with_source(later.engine, "acme", sim_objects(sandbox), ["accounts"])["accounts"]
    assert diff.equal, diff.summary()  # every staged row is still the newer version


def test_nul_and_lone_surrogates_in_undeclared_fields_are_quarantined_by_their_json_path(sandbox, warehouse_url,
                                                                                          caplog):
    """Fields no declaration reads are kept in raw_json, which readers decode: the same text rule
    holds there, on both warehouses, and the quarantine names the JSON path of the string."""
    outcome = run_scenario(sandbox, warehouse_url, "undeclared_bad_text", caplog)
    assert outcome.error is None, outcome.error
    *refused, kept = _planted(sandbox)
    rows = {r["record_id"]: r for r in _quarantine(outcome.engine)}
    assert {(r["record_id"], r["field"]) for r in rows.values()} == {(p.record_id, p.field) for p in refused}
    for plant, path in zip(refused, UNDECLARED_PATHS):
        row = rows[plant.record_id]
        assert row["field"] == path and ("NUL" in row["reason"] or "lone surrogate" in row["reason"]), row
        assert row["raw_value"].isascii() and ("\\u0000" in row["raw_value"] or "\\ud" in row["raw_value"]
                                               or "\\udfff" in row["raw_value"])
    assert outcome.run_log["quarantined"] == len(refused)
    table = staging_table("accounts")
    with outcome.engine.connect() as conn:
        raw = conn.execute(sa.select(table.c.raw_json).where(table.c.id == kept.record_id)).scalar_one()
        staged_ids = set(conn.execute(sa.select(table.c.id)).scalars())
    assert json.loads(raw)["hostile_emoji"] == "\U0001F600 \u00e9"  # a valid pair is text: staged as sent
    assert not staged_ids & {p.record_id for p in refused}
    diff = compare_with_source(outcome.engine, "acme", sim_objects(sandbox), ["accounts"])["accounts"]
    assert set(diff.missing) == {p.record_id for p in refused} and not diff.extra
    assert_no_key(outcome)
