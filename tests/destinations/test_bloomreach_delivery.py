"""Bloomreach, end to end against the offline fake, on SQLite and PostgreSQL: `subscription` and
`subscription_charge` events with their real timestamps and the warehouse's event id, the customer
property `recurly_subscription_active` with update_timestamp; after an import and 7 daily syncs
the fake equals the warehouse; unchanged runs send nothing; faults (429s dropped and resent),
refused commands and a dry run lose and duplicate nothing."""

from __future__ import annotations

import base64
import json
from collections import Counter
from datetime import datetime, timezone
from decimal import Decimal

import pytest
import requests
import sqlalchemy as sa

from recurly_elt.destinations.engine import deliver

from . import expected
from .daily_syncs import import_then_daily_syncs, import_then_days
from .fakes_running import KEY, destination, dry_then_real, running, state, transport
from .warehouse_data import IMPORT_DAY, end_of

DEST = "bloomreach"
NAMES = {"Recurly New Subscription": ("subscription", "created"),
         "Recurly Reactivated Subscription": ("subscription", "activated"),
         "Recurly Canceled Subscription": ("subscription", "canceled"),
         "Recurly Subscription Expired": ("subscription", "deleted"),
         "Recurly Invoice Created": ("subscription_charge", "created"),
         "Recurly Successful Payment": ("subscription_charge", "paid")}


def bloomreach():
    mapping, adapter = destination(DEST)
    adapter.connect("test-key-id", {"project_token": "test-project"})
    return mapping, adapter


def _epoch(value) -> float:
    value = datetime.fromisoformat(value) if isinstance(value, str) else value
    return value.replace(tzinfo=timezone.utc).timestamp()


def expected_customers(engine) -> dict[str, dict]:
    with engine.connect() as c:
        accounts = c.execute(sa.text("SELECT site, id, code FROM stg_accounts")).all()
        subs = c.execute(sa.text("SELECT site, account_id, mrr, status FROM subscription_overview")).all()
    # the stored amount as its exact decimal (SQLite: its text)
    active = {(s, a) for s, a, mrr, status in subs if Decimal(str(mrr or 0)) > 0 or status == "in_trial"}
    return {f"registered:{code}": {"recurly_subscription_active": (site, aid) in active} for site, aid, code in accounts}


def expected_events(engine) -> Counter:
    with engine.connect() as c:
        rows = c.execute(sa.text("SELECT account_code, event_name, occurred_at, event_id FROM lifecycle_events")).all()
        trials = c.execute(sa.text("SELECT id, account_code, trial_ends_at, canceled_at, expires_at FROM stg_subscriptions "
                                   "WHERE trial_ends_at IS NOT NULL")).all()
        as_of = c.execute(sa.text("SELECT MAX(as_of) FROM subscription_overview")).scalar()
    out = Counter((f"registered:{code}", *NAMES[name], _epoch(at), event_id)
                  for code, name, at, event_id in rows if name in NAMES)
    limit = _epoch(datetime.fromisoformat(str(as_of)) if not isinstance(as_of, datetime) else as_of)
    for sub, code, ends, canceled, expires in trials:
        ends = _epoch(ends)
        if ends < limit and all(t is None or _epoch(t) > ends for t in (canceled, expires)):
            out[(f"registered:{code}", "subscription", "activated", ends, f"trial-converted-{sub}")] += 1
    return out


def assert_bloomreach_equals_warehouse(engine, fake, *, exclude_customers=(), exclude_events=(), uncertain_events=None):
    want = {k: v for k, v in expected_customers(engine).items() if k not in exclude_customers}
    for customer, props in want.items():
        assert fake["customers"][customer].get("recurly_subscription_active") == props["recurly_subscription_active"], customer
    got = Counter((e["customer"], e["event_type"], e["properties"]["status"], e["timestamp"], e["properties"]["event_id"])
                  for e in fake["events"])
    wanted = Counter({k: v for k, v in expected_events(engine).items() if k[4] not in exclude_events})
    if uncertain_events is None:
        assert got == wanted
    else:  # events of batches whose answer was lost: at most once
        expected.assert_once_or_uncertain(got, wanted, set(uncertain_events))
    assert fake["duplicate_events"] == 0


def run(engine, server, *, run_id, day, **kw):
    mapping, adapter = bloomreach()
    return deliver(engine, mapping, adapter, transport(server, adapter), run_id=run_id, now=end_of(day), **kw)


def test_import_then_seven_daily_syncs_leave_bloomreach_equal_to_the_warehouse(warehouse):
    with running(DEST) as server:
        syncs = import_then_daily_syncs(run, warehouse, server, assert_bloomreach_equals_warehouse, backfill=True)
    assert syncs.first.kinds["events"].sent > 500 and syncs.imported["contract"]


def test_an_older_customer_value_never_overwrites_a_newer_one(warehouse):
    with running(DEST) as server:
        run(warehouse, server, run_id="import", day=IMPORT_DAY, kinds=["customers"])
        customer, props = next(iter(state(server)["customers"].items()))
        code = customer.split(":", 1)[1]
        auth = "Basic " + base64.b64encode(f"test-key-id:{KEY}".encode()).decode()
        late = {"commands": [{"name": "customers", "data": {"customer_ids": {"registered": code}, "update_timestamp": 0,
                                                            "properties": {"recurly_subscription_active": "stale"}}}]}
        answer = requests.post(f"{server.url}/track/v2/projects/test-project/batch", json=late,
                               headers={"Authorization": auth}, timeout=10).json()
        assert answer["success"] and answer["results"] == [{"success": True}]
        assert state(server)["customers"][customer] == props


def test_faults_and_refused_commands_lose_and_duplicate_nothing(warehouse):
    with running(DEST, faults="5xx=0.15,drop=0.05,lost=0.05,storm=2:1.2", reject=0.03) as server:
        import_then_days(run, warehouse, server, 2, backfill=True)
        fake = state(server)
        assert fake["server"]["faults"].get("5xx") and fake["server"]["statuses"].get("429")
        rejected = expected.rejections(warehouse, DEST)
    assert {k for k, *_ in rejected} == {"customers", "events"}
    assert {(r, s, retry) for _, _, r, s, retry in rejected} == {("Invalid value of property", 200, False)}
    assert_bloomreach_equals_warehouse(
        warehouse, fake, exclude_customers={f"registered:{k}" for kind, k, *_ in rejected if kind == "customers"},
        exclude_events={k for kind, k, *_ in rejected if kind == "events"},
        uncertain_events=expected.uncertain(warehouse, DEST, "events"))
    assert not expected.uncertain(warehouse, DEST, "customers")  # idempotent: resent after a lost answer


def test_dry_run_sends_nothing_and_counts_what_the_real_run_sends(warehouse):
    with running(DEST) as server:
        dry, real = dry_then_real(run, warehouse, server, ("creates", "updates", "events", "unchanged", "skipped", "considered"), day=IMPORT_DAY, backfill=True)
    assert dry.total("creates") + dry.total("events") == real.total("sent")
    command = dry.sample["events"]["commands"][0]
    assert command["name"] == "customers/events" and command["data"]["properties"]["event_id"] == command["command_id"]
    assert "update_timestamp" in dry.sample["customers"]["commands"][0]["data"]
    assert KEY not in json.dumps(dry.sample)


def test_a_connection_without_key_id_or_project_token_is_not_configured(monkeypatch):
    from recurly_elt.destinations.connection import NotConfigured, transport_for

    mapping, adapter = destination(DEST)
    base = {"conn_type": "http", "host": "https://api.exponea.com", "password": KEY}
    for conn, missing in (({**base, "extra": {"project_token": "p"}}, "key id"),
                          ({**base, "login": "key-1"}, "project token")):
        monkeypatch.setenv("AIRFLOW_CONN_RECURLY_BLOOMREACH", json.dumps(conn))
        with pytest.raises(NotConfigured, match=missing):
            transport_for(mapping, adapter)
    monkeypatch.setenv("AIRFLOW_CONN_RECURLY_BLOOMREACH", json.dumps({**base, "login": "key-1",
                                                                      "extra": {"project_token": "p"}}))
    sent = transport_for(mapping, adapter)
    assert sent.session.headers["Authorization"] == "Basic " + base64.b64encode(f"key-1:{KEY}".encode()).decode()
    assert adapter.build_request(mapping.kind("events"), [], [], {}).path == "/track/v2/projects/p/batch"


def test_a_missing_connection_or_one_without_key_is_not_configured(monkeypatch):
    """What the load task turns into a skip with the reason (tests/airflow/test_daily_sync_dag.py)."""
    import dataclasses

    from recurly_elt.destinations.connection import NotConfigured, transport_for

    mapping, adapter = destination(DEST)
    nowhere = dataclasses.replace(mapping, connection="recurly_not_defined_anywhere")
    with pytest.raises(NotConfigured, match="'recurly_not_defined_anywhere' is not defined"):
        transport_for(nowhere, adapter)
    monkeypatch.setenv("AIRFLOW_CONN_RECURLY_BLOOMREACH", json.dumps({"conn_type": "http", "host": "https://x.test"}))
    with pytest.raises(NotConfigured, match="has no API key in its password"):
        transport_for(mapping, adapter)
