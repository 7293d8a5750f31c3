"""End-to-end extraction from the in-process sandbox into staging, on SQLite and PostgreSQL."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import sqlalchemy as sa

from recurly_elt.extract.verify import compare_with_source, matches_source
from recurly_elt.extract.window import Window
from recurly_elt.staging import runlog
from recurly_elt.staging.checksum import checksums
from recurly_elt.staging.tables import all_tables
from recurly_elt.warehouse.engine import create_engine_from_url

from extract_helpers import extract_all, sim_objects

LISTS = {"accounts": "/accounts", "subscriptions": "/subscriptions", "invoices": "/invoices",
         "line_items": "/line_items", "transactions": "/transactions", "plans": "/plans"}


def _diffs(engine, server, site="acme"):
    diffs = compare_with_source(engine, site, sim_objects(server, site))
    return {n: d.summary() for n, d in diffs.items() if not d.equal}, matches_source(diffs)


def test_full_import_matches_sandbox_and_rerun_is_idempotent(sandbox, warehouse_url):
    engine = create_engine_from_url(warehouse_url)
    first = extract_all(sandbox, engine, run_id="import-1")
    assert sum(r.records for r in first.values()) > 1000
    bad, ok = _diffs(engine, sandbox)
    assert ok, bad
    before = checksums(engine, all_tables())

    again = extract_all(sandbox, engine, run_id="import-2")
    assert all(r.inserted == r.updated == r.snapshots == 0 for r in again.values())
    assert checksums(engine, all_tables()) == before
    with engine.connect() as conn:
        log = runlog.read(conn, "import-2")
    assert {row["resource"] for row in log} == set(first) and all(row["status"] == "success" for row in log)
    assert sum(row["unchanged"] for row in log) == sum(r.records for r in first.values())


def test_other_site_is_separate(sandbox, warehouse_url):
    engine = create_engine_from_url(warehouse_url)
    extract_all(sandbox, engine, subdomain="globex")
    bad, ok = _diffs(engine, sandbox, "globex")
    assert ok, bad
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM stg_accounts WHERE site = 'acme'")).scalar() == 0


def test_daily_sync_after_one_day_uses_minimal_requests_and_matches(sandbox, warehouse_url):
    engine = create_engine_from_url(warehouse_url)
    extract_all(sandbox, engine, run_id="import")
    site = sandbox.sites_by_name["acme"]
    day_start = site.sim.now.replace(tzinfo=None)
    changed = site.advance(1)
    sandbox.request_log.clear()

    extract_all(sandbox, engine, Window.of(day_start, day_start + timedelta(days=1)), run_id="daily")
    bad, ok = _diffs(engine, sandbox)
    assert ok, bad
    # The windowed list reads; plan add-ons list their parent plans by created_at, counted apart.
    # Each top-level list also costs one HEAD: its Recurly-Total-Records bounds the read's pages.
    entries = [e for e in sandbox.request_log.entries("acme") if "sort=created_at" not in e["path"]]
    paths = [e["path"].split("?")[0] for e in entries if e["method"] == "GET"]
    heads = [e["path"].split("?")[0] for e in entries if e["method"] == "HEAD"]
    for name, path in LISTS.items():
        n = changed.get(name, 0)
        assert paths.count(path) <= math.ceil(n / 200) + 1, (name, n, paths.count(path))
        assert heads.count(path) <= 1, (name, heads.count(path))


def test_backfill_of_seven_days_twice_is_idempotent(sandbox, warehouse_url):
    engine = create_engine_from_url(warehouse_url)
    end = sandbox.sites_by_name["acme"].sim.now.replace(tzinfo=None)
    windows = [Window.of(end - timedelta(days=d + 1), end - timedelta(days=d)) for d in range(7)]
    for w in windows:
        extract_all(sandbox, engine, w, run_id=f"bf1-{w.start:%F}")
    before = checksums(engine, all_tables())
    assert sum(c.rows for c in before.values()) > 0
    for w in windows:
        extract_all(sandbox, engine, w, run_id=f"bf2-{w.start:%F}")
    assert checksums(engine, all_tables()) == before


def test_window_is_half_open_on_updated_at(sandbox, sqlite_url):
    engine = create_engine_from_url(sqlite_url)
    objects = sim_objects(sandbox)["subscriptions"]
    stamps = sorted({o["updated_at"] for o in objects.values()})
    boundary = datetime.fromisoformat(stamps[len(stamps) // 2][:-1])
    extract_all(sandbox, engine, Window.of(boundary - timedelta(days=30), boundary))
    with engine.connect() as conn:
        staged = set(conn.execute(sa.text("SELECT id FROM stg_subscriptions")).scalars())
    expected = {i for i, o in objects.items()
                if boundary - timedelta(days=30) <= datetime.fromisoformat(o["updated_at"][:-1]) < boundary}
    assert staged == expected
    at_boundary = {i for i, o in objects.items() if datetime.fromisoformat(o["updated_at"][:-1]) == boundary}
    assert at_boundary and not (at_boundary & staged)


def test_faults_on_staging_still_equals_sandbox(sandbox, warehouse_url):
    from recurly_elt.sandbox.faults import FaultSpec

    for site in sandbox.sites_by_name.values():
        site.set_faults(FaultSpec.parse("5xx=0.1,slow=0.03:0.3,drop=0.03,malformed=0.03,storm=4:1"))
    engine = create_engine_from_url(warehouse_url)
    results = extract_all(sandbox, engine)
    bad, ok = _diffs(engine, sandbox)
    assert ok, bad
    faults = sandbox.sites_by_name["acme"].fault_counts
    assert sum(faults.values()) > 0 and sum(r.retries for r in results.values()) > 0
