"""Health scoring, lifecycle events and the `make run` summary."""

from __future__ import annotations

import pandas as pd
import sqlalchemy as sa

from recurly_elt.transform import events, pipeline
from recurly_elt.transform.summary import health_summary
from recurly_elt.warehouse.engine import create_engine_from_url

from .staging_data import DEFAULT_UNTIL, load_objects, simulation


def test_event_ids_are_deterministic_and_site_specific():
    frame = pd.DataFrame({"event_name": ["Recurly Invoice Created"] * 2, "object_id": ["inv1", "inv2"],
                          "occurred_at": pd.to_datetime(["2025-01-01 10:00", "2025-01-01 10:00"])})
    a, b = events.event_ids("s1", frame), events.event_ids("s1", frame)
    assert a.tolist() == b.tolist() and a.nunique() == 2 and len(a[0]) == 32
    assert events.event_ids("s2", frame)[0] != a[0]


def test_sandbox_events_health_and_summary(sqlite_url):
    engine = create_engine_from_url(sqlite_url)
    assert "no transform output" in health_summary(engine)
    load_objects(engine, "sandbox", simulation(accounts=200).objects)
    pipeline.run(engine, "2025-01-01", DEFAULT_UNTIL, health_days=3)
    with engine.connect() as c:
        names = set(c.execute(sa.text("SELECT DISTINCT event_name FROM lifecycle_events")).scalars())
        health_rows = pd.read_sql_query(sa.text("SELECT * FROM v_account_health"), c)
        days = c.execute(sa.text("SELECT COUNT(DISTINCT day) FROM account_health_daily")).scalar()
    # Reactivations and resumes are seen in snapshots, which a single load of staging does not have.
    assert set(events.EVENT_NAMES) - names <= {"Recurly Reactivated Subscription", "Recurly Resumed Subscription"}
    assert days == 3 and len(health_rows) == 200
    scored = health_rows[health_rows["health_band"].isin(["Good", "Average", "Poor"])]
    assert scored["health_score"].between(0, 100).all() and len(scored) > 100
    assert health_rows.loc[~health_rows.index.isin(scored.index), "health_score"].isna().all()
    assert set(health_rows["health_band"]) <= {"Good", "Average", "Poor", "Churned", "Not a customer", "Trial"}
    assert {"active", "churned"} <= set(health_rows["account_status"])
    scale = health_rows["health_band"].isin(["Good", "Average", "Poor"])
    assert not (scale & health_rows["account_status"].isin(["churned", "inactive", "never_subscribed"])).any()
    good = health_rows[health_rows["health_band"] == "Good"]
    assert not good[["alert_past_due_invoice", "alert_failed_payment", "cancellation_scheduled",
                     "alert_card_expires_before_renewal"]].astype(bool).any().any()
    assert (health_rows.loc[health_rows["alert_past_due_invoice"].astype(bool), "health_band"].isin(["Poor", "Churned"])).all()
    text = health_summary(engine)
    assert "MRR (USD) on 2025-12-31" in text and "Movements in 2025-12" in text and "health band: Good" in text


def test_a_window_without_events_writes_none(sqlite_url):
    engine = create_engine_from_url(sqlite_url)
    load_objects(engine, "sandbox", simulation(accounts=20).objects)
    count = "SELECT COUNT(*) FROM lifecycle_events"
    pipeline.run(engine, "2024-06-01", "2024-06-02", health_days=0)  # before the first signup
    with engine.connect() as c:
        assert c.execute(sa.text(count)).scalar() == 0
    pipeline.run(engine, "2025-01-01", DEFAULT_UNTIL, health_days=0)
    with engine.connect() as c:
        assert c.execute(sa.text(count)).scalar() > 0
