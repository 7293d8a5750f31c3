"""The transform over the sandbox's default dataset, on SQLite and PostgreSQL: MRR and movements
agree with the independent computation, every month reconciles, and a window computed at once or
day by day gives identical tables."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pandas as pd
import pytest
import sqlalchemy as sa

from recurly_elt.transform import checks, pipeline, tables
from recurly_elt.warehouse.engine import create_engine_from_url

from .agreement import assert_agrees_to_the_cent
from .staging_data import DEFAULT_START, DEFAULT_UNTIL, load_objects, simulation

SITE = "sandbox"


@pytest.fixture(scope="module")
def default_dataset():
    return simulation()


@pytest.fixture
def staged(warehouse_url, default_dataset):
    engine = create_engine_from_url(warehouse_url)
    load_objects(engine, SITE, default_dataset.objects, default_dataset.invoice_redemptions)
    yield engine
    engine.dispose()


def test_mrr_and_movements_agree_with_the_independent_computation_to_the_cent(staged):
    pipeline.run(staged, DEFAULT_START, DEFAULT_UNTIL, health_days=1)
    compared = assert_agrees_to_the_cent(staged, SITE, DEFAULT_START, DEFAULT_UNTIL - timedelta(days=1))
    assert compared > 1000  # the dataset has a year of business, not a handful of rows
    with staged.connect() as c:
        kinds = set(c.execute(sa.text("SELECT DISTINCT movement_type FROM mrr_movements_monthly")).scalars())
    assert {"new", "expansion", "contraction", "churn", "reactivation", "unchanged"} <= kinds


def test_every_month_reconciles(staged):
    pipeline.run(staged, DEFAULT_START, DEFAULT_UNTIL, health_days=1)
    with staged.connect() as c:
        months = pd.read_sql_query(sa.text("SELECT * FROM v_mrr_movements_by_month ORDER BY month"), c)
    moves = months[["new_mrr", "expansion_mrr", "contraction_mrr", "churn_mrr", "reactivation_mrr",
                    "adjustment_mrr"]].sum(axis=1)
    assert ((months["opening_mrr"] + moves - months["closing_mrr"]).abs() < 0.01).all()
    carried = months["opening_mrr"].iloc[1:].to_numpy() - months["closing_mrr"].iloc[:-1].to_numpy()
    assert (abs(carried) < 0.01).all()  # each month opens where the last one closed
    for name in checks.CHECKS:
        checks.run_check(staged, name)


def _dump(engine) -> dict[str, list[tuple]]:
    out = {}
    with engine.connect() as c:
        for table in tables.METADATA.sorted_tables:
            if table.name in ("transform_run_log", "calendar_days"):
                continue
            cols = [col for col in table.columns if col.name != "recorded_at"]
            rows = c.execute(sa.select(*cols)).all()
            out[table.name] = sorted((tuple(r) for r in rows), key=repr)
    return out


def test_a_window_at_once_or_day_by_day_gives_identical_tables(warehouse_url):
    engine = create_engine_from_url(warehouse_url)
    sim = simulation(accounts=150)
    load_objects(engine, SITE, sim.objects, sim.invoice_redemptions)
    start, end = date(2025, 11, 20), date(2025, 12, 20)
    pipeline.run(engine, start, end)
    at_once = _dump(engine)
    pipeline.drop_outputs(engine)
    day = start
    while day < end:
        pipeline.run(engine, day, day + timedelta(days=1))
        day += timedelta(days=1)
    day_by_day = _dump(engine)
    assert at_once.keys() == day_by_day.keys()
    for name in at_once:
        assert at_once[name] == day_by_day[name], name
    # every account on every day from its creation on: (site, day, account_id, ...)
    with engine.connect() as c:
        accounts = pd.read_sql_query(sa.text("SELECT id, created_at FROM stg_accounts"), c)
    created = pd.to_datetime(accounts["created_at"], format="ISO8601", utc=True).dt.tz_localize(None)
    days = [start + timedelta(days=i) for i in range(30)]
    expected = {(d, a) for a, at in zip(accounts["id"], created) for d in days if at < pd.Timestamp(d + timedelta(days=1))}
    assert {(row[1], row[2]) for row in at_once["account_health_daily"]} == expected
    assert len(at_once["account_health_daily"]) == len(expected)
    assert at_once["lifecycle_events"] and at_once["mrr_subscription_runs"]
    # running the same window again changes nothing
    pipeline.run(engine, start, end)
    assert _dump(engine) == at_once
    engine.dispose()


def test_a_failed_check_names_the_offending_rows(sqlite_url):
    engine = create_engine_from_url(sqlite_url)
    pipeline.prepare(engine)
    with engine.begin() as c:
        c.execute(tables.MRR_SUBSCRIPTION_RUNS.insert().values(
            site="s1", subscription_id="sub-negative", day_from=date(2025, 1, 1), day_to=date(2025, 2, 1),
            account_id="a1", currency="USD", mrr=Decimal("-5"), mrr_reporting=Decimal("-5")))
    with pytest.raises(checks.DataQualityError, match="(?s)no_negative_mrr.*sub-negative"):
        checks.run_check(engine, "no_negative_mrr")
    checks.run_check(engine, "no_duplicate_keys")


def test_a_2000_account_400_day_history_agrees_to_the_cent(warehouse_url):
    """The history `recurly-elt bench transform --accounts 2000 --days 400` stages, whole."""
    from recurly_elt.sandbox.simulation import SiteSimulation

    until, days = DEFAULT_UNTIL, 400
    sim = SiteSimulation(subdomain="bench", seed=42, accounts=round(2000 * 365 / days),
                         start_date=until - timedelta(days=days), until=until)
    engine = create_engine_from_url(warehouse_url)
    load_objects(engine, "bench", sim.objects, sim.invoice_redemptions)
    start = until - timedelta(days=days)
    pipeline.run(engine, start, until, health_days=1)
    assert assert_agrees_to_the_cent(engine, "bench", start, until - timedelta(days=1)) > 10_000
    engine.dispose()
