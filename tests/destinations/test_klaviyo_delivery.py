"""Klaviyo, end to end against the offline fake, on SQLite and PostgreSQL: profile import jobs
(polled to completion), bulk event jobs with unique_id and the backfill flag, whole-job refusals
for one bad email split until the bad rows are isolated, faults, kill -9 and the dry run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa

from recurly_elt.destinations.engine import deliver
from recurly_elt.fakes.rejects import chosen

from . import expected
from .daily_syncs import import_then_daily_syncs
from .fakes_running import destination, dry_then_real, running, state, transport
from .test_braze_delivery import KILLER, ROOT
from .warehouse_data import IMPORT_DAY, end_of

METRICS = {"Recurly Failed Recurring Payment": "Failed Payment", "Recurly Refund Issued": "Refunded Payment",
           "Recurly Successful Payment": "Successful Payment", "Recurly Invoice Created": "Issued Invoice"}


def expected_events(engine, since: datetime | None = None) -> Counter:
    out = Counter({k: v for k, v in expected.events(engine, METRICS, since).items()})
    with engine.connect() as c:
        rows = c.execute(sa.text(
            "SELECT e.account_code, e.occurred_at, e.event_id, li.id FROM lifecycle_events e "
            "JOIN stg_line_items li ON li.site = e.site AND li.invoice_id = e.invoice_id "
            "WHERE e.event_name = 'Recurly Invoice Created' AND li.type = 'charge'")).all()
    for code, at, event_id, line_item in rows:
        at = datetime.fromisoformat(at) if isinstance(at, str) else at
        if since is None or at >= since:
            out[(code, "Ordered Product", at.strftime("%Y-%m-%dT%H:%M:%SZ"), f"{event_id}:{line_item}")] += 1
    return out


def assert_klaviyo_equals_warehouse(engine, fake, *, exclude_profiles=(), exclude_events=(), since=None):
    profiles = fake["profiles"]
    want = {k: v for k, v in expected.accounts(engine).items() if k not in exclude_profiles}
    assert set(profiles) - set(exclude_profiles) == set(want)
    for code, exp in want.items():
        got = profiles[code]
        assert got.get("email") == exp["email"] and got.get("external_id") == code, code
        props = got["properties"]
        assert props.get("Recurly MRR") == exp["mrr"] and props.get("Recurly Status") == exp["status"], code
        assert props.get("Recurly Health Band") == exp["band"] and props.get("Recurly Account Code") == code, code
    received = Counter((e["profile"], e["metric"], e["time"], e["unique_id"]) for e in fake["events"])
    want_events = Counter({k: v for k, v in expected_events(engine, since).items() if k[3] not in exclude_events})
    assert received == want_events


def run(engine, server, *, run_id, day, **kw):
    mapping, adapter = destination("klaviyo")
    return deliver(engine, mapping, adapter, transport(server, adapter), run_id=run_id, now=end_of(day), **kw)


def test_import_then_seven_daily_syncs_leave_klaviyo_equal_to_the_warehouse(warehouse):
    live = []

    def fresh_events_are_live(day, daily, fake):
        fresh = [e for e in fake["events"] if e["time"] >= day.isoformat()]
        assert not any(e["backfill"] for e in fresh)  # live events may trigger flows
        live.extend(fresh)

    with running("klaviyo") as server:
        syncs = import_then_daily_syncs(run, warehouse, server, assert_klaviyo_equals_warehouse, backfill=True,
                                        each_day=fresh_events_are_live)
    assert syncs.first.total("polls") >= 2
    cutoff = (end_of(IMPORT_DAY) - timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    events = syncs.imported["events"]
    assert all(e["backfill"] == (e["time"] < cutoff) for e in events)  # old history never fires flows
    assert any(e["backfill"] for e in events) and not all(e["backfill"] for e in events)
    assert live and syncs.fake["ignored_duplicates"] == 0


def test_events_older_than_the_age_limit_wait_for_a_backfill(warehouse):
    with running("klaviyo") as server:
        live = run(warehouse, server, run_id="live", day=IMPORT_DAY)
        held = sum(k.skipped_reasons.get("events older than 30 days (not a backfill)", 0) for k in live.kinds.values())
        cutoff = end_of(IMPORT_DAY) - timedelta(days=30)
        assert held > 100
        assert_klaviyo_equals_warehouse(warehouse, state(server), since=cutoff)
        backfill = run(warehouse, server, run_id="backfill", day=IMPORT_DAY, backfill=True)
        assert backfill.total("events") == held
        fake = state(server)
        assert_klaviyo_equals_warehouse(warehouse, fake)
        assert sum(e["backfill"] for e in fake["events"]) == held


@pytest.mark.parametrize("pointers", [True, False], ids=["errors-name-rows", "split-in-halves"])
def test_one_bad_email_refuses_a_job_and_only_its_rows_are_rejected(warehouse, pointers):
    with running("klaviyo", reject=0.05, pointers=pointers, faults="5xx=0.1,drop=0.05") as server:
        result = run(warehouse, server, run_id="import", day=IMPORT_DAY, backfill=True)
        fake = state(server)
        with warehouse.connect() as c:
            rejected = c.execute(sa.text("SELECT kind, object_key, reason FROM load_rejections")).all()
        bad_codes = {k for kind, k, _ in rejected if kind == "profiles"}
        bad_events = {k for kind, k, _ in rejected if kind != "profiles"}
        assert bad_codes and bad_events and all(r.startswith("Invalid email address") for *_, r in rejected)
        assert result.total("requests") > result.total("min_requests")  # the refused jobs were split
        assert_klaviyo_equals_warehouse(warehouse, fake, exclude_profiles=bad_codes, exclude_events=bad_events)
        # Fix the emails: the next run delivers the profiles and their events.
        with warehouse.begin() as c:
            for code in bad_codes:
                fixed = next(f"fixed{i}.{code}@example.com" for i in range(100)
                             if not chosen(7, 0.05, f"fixed{i}.{code}@example.com"))
                c.execute(sa.text("UPDATE stg_accounts SET email = :e WHERE code = :c"), {"e": fixed, "c": code})
        run(warehouse, server, run_id="after-fix", day=IMPORT_DAY, backfill=True)
        assert_klaviyo_equals_warehouse(warehouse, state(server))
    with warehouse.connect() as c:
        assert c.execute(sa.text("SELECT COUNT(*) FROM load_rejections")).scalar() == 0


def test_dry_run_sends_nothing_and_counts_what_the_real_run_sends(warehouse):
    with running("klaviyo") as server:
        dry, real = dry_then_real(run, warehouse, server, ("creates", "updates", "events", "unchanged", "skipped", "considered"), day=IMPORT_DAY, backfill=True)
    assert dry.total("creates") + dry.total("events") == real.total("sent")
    assert dry.sample["profiles"]["data"]["type"] == "profile-bulk-import-job"


def test_kill_9_mid_delivery_then_retry_resends_and_klaviyo_keeps_each_event_once(warehouse):
    with running("klaviyo") as server:
        code = KILLER.replace('destination("braze")', 'destination("klaviyo")').format(
            plugins=str(ROOT / "plugins"), root=str(ROOT), url=server.url, kind="payments", nth=1,
            db=warehouse.url.render_as_string(hide_password=False), now=end_of(IMPORT_DAY).isoformat())
        proc = subprocess.run([sys.executable, "-c", code], env={**os.environ}, capture_output=True, text=True,
                              timeout=300)
        assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
        retry = run(warehouse, server, run_id="killed", day=IMPORT_DAY, backfill=True)
        fake = state(server)
    assert retry.status == "success" and not retry.uncertain_batches
    assert fake["ignored_duplicates"] > 0  # the resent job's events were already recorded: ignored
    assert_klaviyo_equals_warehouse(warehouse, fake)
    with warehouse.connect() as c:
        statuses = dict(c.execute(sa.text("SELECT status, COUNT(*) FROM load_requests GROUP BY status")).all())
    assert statuses.get("pending", 0) == 0 and statuses["failed"] == 1
