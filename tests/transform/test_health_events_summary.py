"""Health scoring, lifecycle events and the `make run` summary."""

from __future__ import annotations

import pandas as pd
import sqlalchemy as sa

from recurly_elt.transform import events, health, pipeline
from recurly_elt.transform.config import TransformConfig
from recurly_elt.transform.summary import health_summary
from recurly_elt.warehouse.engine import create_engine_from_url

from .staging_data import DEFAULT_UNTIL, load_objects, simulation


def test_score_grades_metrics_and_leaves_missing_ones_out():
    cfg = TransformConfig.load().health
    metrics = pd.DataFrame({
        "overdue_amount": [0.0, 500.0], "overdue_invoice_count": [0, 3], "failed_payments_30d": [0, 2],
        "mrr_trend_30d_pct": [5.0, float("nan")], "mrr_trend_90d_pct": [float("nan"), float("nan")],
        "cancellation_scheduled": [0.0, 1.0], "card_expiring_30d": [0.0, 0.0]})
    scores = health.score(metrics, cfg)
    # row 2: billing Poor (0, weight 50), growth missing (left out), retention 40 (weight 20): 800 / 70
    assert scores.tolist() == [100.0, 11.4]


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
    assert health_rows["health_score"].between(0, 100).all()
    assert set(health_rows["health_band"]) <= {"Good", "Average", "Poor"}
    assert {"active", "churned"} <= set(health_rows["account_status"])
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
