"""Braze, end to end against the offline fake, on SQLite and PostgreSQL: a one-time import then 7
daily syncs leave Braze equal to the warehouse; unchanged runs send nothing; faults and rejected
records lose and duplicate nothing; a kill -9 mid-delivery is recovered by policy; a dry run sends
nothing and counts what the real run sends."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import sqlalchemy as sa

from recurly_elt.destinations.engine import deliver
from recurly_elt.fakes.rejects import chosen

from . import expected
from .daily_syncs import import_then_daily_syncs, import_then_days
from .fakes_running import destination, dry_then_real, running, state, transport
from .warehouse_data import DAYS, IMPORT_DAY, end_of, transform_day

ROOT = Path(__file__).resolve().parents[2]


def assert_braze_equals_warehouse(engine, fake_state, *, exclude_users=(), exclude_events=(), uncertain_events=None):
    """`uncertain_events`: event ids of batches whose answer was lost (at most once): each is in
    Braze at most once, every other event exactly once."""
    users = fake_state["users"]
    want = {k: v for k, v in expected.accounts(engine).items() if k not in exclude_users}
    # A user whose attributes were refused may still exist in Braze: its events create it.
    assert set(users) - set(exclude_users) == set(want)
    for code, exp in want.items():
        got = users[code]
        assert got.get("recurly_account_status") == exp["status"], code
        assert got.get("recurly_mrr") == exp["mrr"], code
        assert got.get("recurly_health_band") == exp["band"], code
        assert got.get("recurly_health_score") == exp["score"], code
        assert got.get("recurly_plan") == exp["plan"], code  # absent in Braze when null
        assert got.get("email") == exp["email"], code
    received = Counter((e["user"], e["name"], e["time"], e["properties"]["event_id"]) for e in fake_state["events"])
    want_events = expected.events(engine)
    want_events = Counter({k: v for k, v in want_events.items() if k[3] not in exclude_events})
    if uncertain_events is None:
        assert received == want_events
    else:
        expected.assert_once_or_uncertain(received, want_events, set(uncertain_events))
    assert fake_state["duplicate_events"] == 0


def run(engine, server, *, run_id, day, **kw):
    mapping, adapter = kw.pop("dest", None) or destination("braze")
    return deliver(engine, mapping, adapter, transport(server, adapter), run_id=run_id, now=end_of(day), **kw)


def test_import_then_seven_daily_syncs_leave_braze_equal_to_the_warehouse(warehouse):
    with running("braze") as server:
        syncs = import_then_daily_syncs(run, warehouse, server, assert_braze_equals_warehouse, backfill=True)
    assert syncs.first.total("sent") > 500
    assert syncs.dailies[-1].kinds["users"].updates > 0  # the daily runs did update attributes
    with warehouse.connect() as c:
        runs = c.execute(sa.text("SELECT COUNT(*), SUM(requests) FROM load_run_log WHERE destination = 'braze'")).one()
        pending = c.execute(sa.text("SELECT COUNT(*) FROM load_requests WHERE status <> 'delivered'")).scalar()
    assert runs[0] == 15 and pending == 0


def test_updates_send_only_the_changed_attributes(warehouse):
    with running("braze") as server:
        run(warehouse, server, run_id="import", day=IMPORT_DAY, backfill=True)
        points = state(server)["data_points"]
        transform_day(warehouse, DAYS[0])
        daily = run(warehouse, server, run_id="d0", day=DAYS[0])
        written = state(server)["data_points"] - points
    users = daily.kinds["users"]
    assert users.updates > 0
    # A full object is 16 attributes; an update writes only what changed.
    assert written < (users.updates + users.creates) * 16


def test_faults_and_rejected_records_lose_and_duplicate_nothing(warehouse):
    # drop: closed before Braze applies the request; lost: applied, then closed without an answer.
    faults = "5xx=0.1,drop=0.05,lost=0.05,storm=3:1"
    with running("braze", faults=faults, reject=0.05) as server:
        server.faults.started = time.time() - 2.0  # the storm period starts in its storm: the first requests meet it
        import_then_days(run, warehouse, server, 3, backfill=True)
        fake = state(server)
        assert fake["server"]["faults"].get("5xx") and fake["server"]["faults"].get("drop")
        assert fake["server"]["faults"].get("lost")
        assert fake["server"]["faults"].get("storm") and fake["server"]["statuses"].get("429")
        with warehouse.connect() as c:
            rejected = c.execute(sa.text("SELECT kind, object_key, reason, retryable FROM load_rejections "
                                         "WHERE destination = 'braze'")).all()
        users_rejected = {k for kind, k, _, _ in rejected if kind == "users"}
        events_rejected = {k for kind, k, _, _ in rejected if kind == "events"}
        assert users_rejected and events_rejected
        assert {r for _, _, r, _ in rejected} == {"Invalid email address", "Invalid event: properties rejected"}
        assert not any(retry for *_, retry in rejected)
        # Attributes (idempotent) are resent after a lost answer; events are at most once: a batch
        # whose answer was lost is uncertain, reported, never resent, so nothing arrives twice.
        uncertain = expected.uncertain(warehouse, "braze", "events")
        assert uncertain and not expected.uncertain(warehouse, "braze", "users")
        assert_braze_equals_warehouse(warehouse, fake, exclude_users=users_rejected, exclude_events=events_rejected,
                                      uncertain_events=uncertain)

        # The bad emails are fixed in the warehouse: the next run delivers those users.
        with warehouse.begin() as c:
            for code in users_rejected:
                fixed = next(f"fixed{i}.{code}@example.com" for i in range(100)
                             if not chosen(7, 0.05, f"{code}|fixed{i}.{code}@example.com"))
                c.execute(sa.text("UPDATE stg_accounts SET email = :e WHERE code = :c"), {"e": fixed, "c": code})
        later = run(warehouse, server, run_id="after-fix", day=DAYS[2])
        assert later.kinds["users"].sent == len(users_rejected)
        assert later.kinds["events"].requests == 0  # permanent rejections are not retried unchanged
        assert_braze_equals_warehouse(warehouse, state(server), exclude_events=events_rejected,
                                      uncertain_events=uncertain)
    with warehouse.connect() as c:
        left = c.execute(sa.text("SELECT COUNT(*) FROM load_rejections WHERE kind = 'users'")).scalar()
    assert left == 0


def test_rate_limit_is_paced_by_the_headers(warehouse):
    with running("braze", rate_limit="4/1") as server:
        result = run(warehouse, server, run_id="import", day=IMPORT_DAY, backfill=True)
        fake = state(server)
    assert result.status == "success"
    assert fake["server"]["statuses"].get("429", 0) <= 1
    assert_braze_equals_warehouse(warehouse, fake)


def test_dry_run_sends_nothing_and_counts_what_the_real_run_sends(warehouse):
    with running("braze") as server:
        dry, real = dry_then_real(run, warehouse, server, ("creates", "updates", "events", "unchanged", "skipped", "considered"), day=IMPORT_DAY, backfill=True)
    assert dry.total("creates") + dry.total("events") == real.total("sent")
    with warehouse.connect() as c:
        row = c.execute(sa.text("SELECT dry_run, creates, events, sample FROM load_run_log WHERE run_id = 'dry'")).one()
        delivered_by_dry = c.execute(sa.text("SELECT COUNT(*) FROM load_delivered WHERE run_id = 'dry'")).scalar()
    assert row[0] and row[1] == dry.total("creates") and delivered_by_dry == 0
    sample = json.loads(row[3])
    assert len(sample["users"]["attributes"]) == 5 and sample["events"]["events"][0]["name"].startswith("Recurly ")
    assert "test-key" not in row[3]


def test_keyless_rows_are_set_aside_with_the_reason(warehouse):
    with warehouse.begin() as c:
        code = c.execute(sa.text("SELECT account_code FROM account_health_daily LIMIT 1")).scalar()
        c.execute(sa.text("UPDATE account_health_daily SET account_code = '' WHERE account_code = :c"), {"c": code})
    with running("braze") as server:
        result = run(warehouse, server, run_id="import", day=IMPORT_DAY, kinds=["users"])
        assert code not in state(server)["users"]
    assert result.kinds["users"].skipped == 1
    with warehouse.connect() as c:
        reason = c.execute(sa.text("SELECT reason FROM load_rejections WHERE kind = 'users'")).scalar()
    assert reason == "missing key: column account_key is empty"  # the account code is empty


def test_import_only_never_overwrites_and_still_creates_new_users(warehouse):
    with running("braze") as server:
        run(warehouse, server, run_id="import", day=IMPORT_DAY, kinds=["users"], mode="import_only")
        before = state(server)["users"]
        transform_day(warehouse, DAYS[0])
        later = run(warehouse, server, run_id="d0", day=DAYS[0], kinds=["users"], mode="import_only")
        after = state(server)["users"]
    assert later.kinds["users"].updates == 0 and later.kinds["users"].skipped > 0
    assert all(after[k] == v for k, v in before.items())
    assert set(after) - set(before) == {k for k in expected.accounts(warehouse) if k not in before}


KILLER = """
import os, signal, sys
from datetime import datetime
sys.path[:0] = [{plugins!r}, {root!r}]
from recurly_elt.destinations.engine import deliver
from recurly_elt.warehouse.engine import create_engine_from_url
from tests.destinations.fakes_running import destination, transport
from recurly_elt.fakes.http import FakeServer
mapping, adapter = destination("braze")
class Target: url = {url!r}
seen = []
def before_settle(batch_id):
    if batch_id.startswith({kind!r}):
        seen.append(batch_id)
        if len(seen) == {nth}:
            os.kill(os.getpid(), signal.SIGKILL)
deliver(create_engine_from_url({db!r}), mapping, adapter, transport(Target, adapter), run_id="killed",
        backfill=True, now=datetime.fromisoformat({now!r}), before_settle=before_settle)
"""


@pytest.mark.parametrize("kind", ["users", "events"])
def test_kill_9_mid_delivery_then_retry(warehouse, kind):
    with running("braze") as server:
        code = KILLER.format(plugins=str(ROOT / "plugins"), root=str(ROOT), url=server.url, kind=kind,
                             nth=1 if kind == "users" else 3, db=warehouse.url.render_as_string(hide_password=False),
                             now=end_of(IMPORT_DAY).isoformat())
        proc = subprocess.run([sys.executable, "-c", code], env={**os.environ}, capture_output=True, text=True,
                              timeout=300)
        assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
        with warehouse.connect() as c:
            pending = c.execute(sa.text("SELECT batch_id, object_keys FROM load_requests WHERE status = 'pending'")).all()
        assert len(pending) == 1
        batch_id, keys = pending[0][0], json.loads(pending[0][1])
        retry = run(warehouse, server, run_id="killed", day=IMPORT_DAY, backfill=True)
        fake = state(server)
    assert retry.status == "success"
    assert_braze_equals_warehouse(warehouse, fake)  # nothing lost, no event twice
    with warehouse.connect() as c:
        status = c.execute(sa.text("SELECT status, error FROM load_requests WHERE batch_id = :b"), {"b": batch_id}).one()
        uncertain = c.execute(sa.text("SELECT COUNT(*) FROM load_delivered WHERE uncertain")).scalar()
        log_row = c.execute(sa.text("SELECT uncertain_batches, uncertain_batch_ids FROM load_run_log "
                                    "WHERE run_id = 'killed'")).one()
    if kind == "users":  # idempotent: resent
        assert status[0] == "failed" and "resent" in status[1] and uncertain == 0
        assert retry.kinds["users"].sent == len(keys) and not retry.uncertain_batches
    else:  # Braze events, at most once: marked uncertain and reported, not resent
        assert status[0] == "uncertain" and uncertain == len(keys)
        assert retry.uncertain_batches == [batch_id]
        assert log_row[0] == 1 and json.loads(log_row[1]) == [batch_id]


def test_at_least_once_policy_resends_an_interrupted_event_batch(warehouse):
    mapping, adapter = destination("braze")
    mapping = dataclasses.replace(mapping, non_idempotent_policy="at_least_once")
    with running("braze") as server:
        with warehouse.begin() as c:  # a batch left pending by a killed run, never sent
            from recurly_elt.destinations import ledger

            ledger.ensure_ledger(warehouse)
            event_id = c.execute(sa.text("SELECT event_id FROM lifecycle_events LIMIT 1")).scalar()
            ledger.mark_pending(c, "braze", "old", "events-x-00001", "events", [event_id], 100)
        result = run(warehouse, server, run_id="new", day=IMPORT_DAY, backfill=True, dest=(mapping, adapter))
        assert_braze_equals_warehouse(warehouse, state(server))
    assert not result.uncertain_batches


def test_unreadable_answers_to_event_batches_are_uncertain_not_resent(warehouse):
    with running("braze", faults="malformed=0.3") as server:
        result = run(warehouse, server, run_id="import", day=IMPORT_DAY, backfill=True, kinds=["events"])
        fake = state(server)
    assert result.uncertain_batches and fake["duplicate_events"] == 0
    # Every event is in Braze exactly once (the fake applied the requests whose answers it cut).
    received = Counter((e["user"], e["name"], e["time"], e["properties"]["event_id"]) for e in fake["events"])
    assert received == expected.events(warehouse)
    with warehouse.connect() as c:
        statuses = dict(c.execute(sa.text("SELECT status, COUNT(*) FROM load_requests GROUP BY status")).all())
    assert statuses["uncertain"] == len(result.uncertain_batches)
