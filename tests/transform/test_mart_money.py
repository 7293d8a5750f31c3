"""The marts store money exactly, and every reader gets the exact amount (both warehouses).

Amounts chosen where a binary float goes wrong: 1241.10 / 12 = 103.425 and 217.50 / 12 = 18.125
(half cents, up by the rule), and 0.10 + 0.20 (0.30000000000000004 as doubles). From the transform's
tables through the views to a destination's payload, each is the decimal itself, with no float on
the way: on SQLite no mart amount is stored as REAL, and the destination's source rows hand over
decimals (text or Decimal), never a float.
"""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal

import pytest
import sqlalchemy as sa

from recurly_elt.destinations import records
from recurly_elt.destinations.account_keys import AccountKeys
from recurly_elt.destinations.mapping import load_mapping
from recurly_elt.transform import pipeline, tables
from recurly_elt.transform.summary import health_summary
from recurly_elt.warehouse.engine import create_engine_from_url

from .builders import Book
from .staging_data import load_objects

MONEY = {t.name: [c.name for c in t.columns if c.info.get("money")] for t in tables.METADATA.sorted_tables}
DAY = "2025-03-01"


def exact(value) -> Decimal:
    """A value read back as the decimal it stands for: Decimal (PostgreSQL) as is; SQLite's text
    as written; a view's double on SQLite through its shortest repr."""
    return value if isinstance(value, Decimal) else Decimal(repr(value) if isinstance(value, float) else value)


@pytest.fixture(scope="module")
def book() -> dict:
    b = Book()
    annual, monthly = b.plan("annual", length=12), b.plan("monthly")
    half_up = b.account("half-up", email="half-up@example.com")
    s = b.subscription(half_up, annual, "2025-01-10")
    b.charge(s, annual, "2025-01-10", "2026-01-10", 1241.10)  # 103.425 a month -> 103.43
    tenth = b.account("tenths", email="tenths@example.com")
    for amount in (0.10, 0.20):  # the account's MRR is 0.30, not 0.30000000000000004
        s = b.subscription(tenth, monthly, "2025-01-10")
        for start, end in (("2025-01-10", "2025-02-10"), ("2025-02-10", "2025-03-10"), ("2025-03-10", "2025-04-10")):
            b.charge(s, monthly, start, end, amount)
    eighth = b.account("eighth", email="eighth@example.com")
    s = b.subscription(eighth, annual, "2025-01-10")
    b.charge(s, annual, "2025-01-10", "2026-01-10", 217.50)  # 18.125 -> 18.13
    return {"book": b, "accounts": {a["code"]: a["id"] for a in (half_up, tenth, eighth)}}


@pytest.fixture
def engine(warehouse_url, book):
    engine = create_engine_from_url(warehouse_url)
    load_objects(engine, "s1", book["book"].objects)
    pipeline.run(engine, "2025-01-01", "2025-04-01", health_days=1)
    yield engine
    engine.dispose()


def test_no_mart_amount_is_stored_as_a_binary_float(engine):
    if engine.dialect.name != "sqlite":
        with engine.connect() as c:
            for table, cols in MONEY.items():
                kinds = {r[0]: r[1] for r in c.execute(sa.text(
                    "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = :t"), {"t": table})}
                assert all(kinds[col] == "numeric" for col in cols), (table, kinds)
        return
    with engine.connect() as c:
        for table, cols in MONEY.items():
            for col in cols:
                stored = dict(c.execute(sa.text(f"SELECT typeof({col}), COUNT(*) FROM {table} GROUP BY 1")).all())
                assert set(stored) <= {"text", "null"}, f"{table}.{col} stored as {stored}"
        assert c.execute(sa.text("SELECT COUNT(*) FROM mrr_account_runs")).scalar() > 0


def test_the_marts_hold_the_exact_amounts(engine, book):
    ids = book["accounts"]
    day = datetime.fromisoformat(DAY).date()
    with engine.connect() as c:
        runs = tables.MRR_ACCOUNT_RUNS.c
        mrr = dict(c.execute(sa.select(runs.account_id, runs.mrr)
                             .where(runs.day_from <= day, runs.day_to > day)).all())
        h = tables.ACCOUNT_HEALTH.c
        health = dict(c.execute(sa.select(h.account_id, h.mrr)).all())
        m = tables.MRR_MOVEMENTS.c
        closing = dict(c.execute(sa.select(m.account_id, m.closing_mrr).where(m.month == day)).all())
    expected = {ids["half-up"]: Decimal("103.43"), ids["tenths"]: Decimal("0.30"), ids["eighth"]: Decimal("18.13")}
    for stored in (mrr, health, closing):
        assert stored == expected and all(isinstance(v, Decimal) for v in stored.values())


def test_the_views_give_the_exact_cents_of_exact_sums(engine, book):
    ids = book["accounts"]
    with engine.connect() as c:
        daily = dict(c.execute(sa.text("SELECT account_id, mrr FROM v_mrr_account_daily WHERE day = :d"),
                               {"d": DAY}).all())
        month = c.execute(sa.text("SELECT opening_mrr, closing_mrr, paying_accounts FROM v_mrr_movements_by_month "
                                  "WHERE month = :m"), {"m": DAY}).one()
        health = dict(c.execute(sa.text("SELECT account_id, mrr FROM v_account_health")).all())
        plans = {(p, b): v for p, b, v in c.execute(sa.text(
            "SELECT plan_code, mrr_band, mrr_reporting FROM v_plan_segment_summary WHERE status = 'active'"))}
        average = c.execute(sa.text("SELECT average_mrr_reporting FROM v_plan_segment_summary "
                                    "WHERE plan_code = 'monthly' AND status = 'active'")).scalar()
    assert {k: exact(v) for k, v in daily.items()} == {
        ids["half-up"]: Decimal("103.43"), ids["tenths"]: Decimal("0.30"), ids["eighth"]: Decimal("18.13")}
    assert {k: exact(v) for k, v in health.items()} == {k: exact(v) for k, v in daily.items()}
    # 103.43 + 0.30 + 18.13 as doubles is 121.86000000000001: the view sums exact values
    assert (exact(month[0]), exact(month[1]), month[2]) == (Decimal("121.86"), Decimal("121.86"), 3)
    assert {k: exact(v) for k, v in plans.items()} == {
        ("annual", "50-199"): Decimal("103.43"), ("annual", "0-49"): Decimal("18.13"), ("monthly", "0-49"): Decimal("0.30")}
    assert exact(average) == Decimal("0.15")  # (0.10 + 0.20) / 2, rounded half up: 0.15


@pytest.mark.parametrize("destination, kind, field", [
    ("braze", "users", "recurly_mrr"), ("klaviyo", "profiles", "Recurly MRR"),
    ("customersuccessbox", "accounts", "mrr"), ("customersuccessbox", "subscriptions", "mrr"),
    ("activecampaign", "contacts", "RECURLY_MRR"),
])
def test_a_destination_receives_the_exact_decimal_read_without_a_float(engine, book, destination, kind, field):
    spec = load_mapping(destination).kind(kind)
    column = next(f.column for f in spec.fields if f.name == field)
    with engine.connect() as c:
        rows = c.execute(sa.text(spec.source)).mappings().all()
        assert rows and not any(isinstance(r[column], float) for r in rows), "a float on the way to the payload"
        chosen = records.select(c, spec, now=datetime(2025, 4, 1), max_age_days=30, backfill=False,
                                account_keys=AccountKeys("account_code", ":"))
    sent = sorted(json.loads(records.encode(r.payload))[field] for r in chosen.records)
    assert sent == [0.1, 0.2, 18.13, 103.43] if kind == "subscriptions" else [0.3, 18.13, 103.43]
    texts = sorted(records.encode(r.payload[field]).decode() for r in chosen.records)
    assert texts == sorted(["0.10", "0.20", "18.13", "103.43"] if kind == "subscriptions" else
                           ["0.30", "18.13", "103.43"])


def test_the_run_summary_prints_the_exact_total(engine):
    assert "MRR (USD) on 2025-03-31: 121.86 over 3 paying accounts" in health_summary(engine)


def test_a_sqlite_mart_of_an_older_version_is_rebuilt_with_exact_text(sqlite_url):
    engine = create_engine_from_url(sqlite_url)
    with engine.begin() as c:  # mrr_account_runs as an older version created it: REAL money
        c.exec_driver_sql("CREATE TABLE mrr_account_runs (site TEXT NOT NULL, account_id TEXT NOT NULL, "
                          "day_from DATE NOT NULL, day_to DATE NOT NULL, mrr NUMERIC(20, 6) NOT NULL, currency TEXT, "
                          "PRIMARY KEY (site, account_id, day_from)) WITHOUT ROWID")
        c.exec_driver_sql("INSERT INTO mrr_account_runs VALUES ('s1', 'a1', '2025-01-01', '2025-02-01', 103.43, 'USD'),"
                          " ('s1', 'a2', '2025-01-01', '2025-02-01', 0.3, 'USD'),"
                          " ('s1', 'a3', '2025-01-01', '2025-02-01', 18, 'USD')")
        c.exec_driver_sql("CREATE VIEW v_mrr_account_daily AS SELECT * FROM mrr_account_runs")  # an older view
    pipeline.prepare(engine)
    pipeline.prepare(engine)  # once rebuilt, left as it is
    with engine.connect() as c:
        stored = c.exec_driver_sql("SELECT account_id, typeof(mrr), mrr FROM mrr_account_runs ORDER BY 1").all()
        view = c.exec_driver_sql("SELECT COUNT(*) FROM v_mrr_account_daily").scalar()
    assert stored == [("a1", "text", "103.430000"), ("a2", "text", "0.300000"), ("a3", "text", "18.000000")]
    assert view == 0  # the views read the rebuilt table (no calendar days yet)
    engine.dispose()


def test_an_older_sqlite_mart_too_large_to_recover_exactly_is_refused_by_name(sqlite_url):
    engine = create_engine_from_url(sqlite_url)
    with engine.begin() as c:  # a REAL amount of 10^9 or more: its six decimals cannot be told apart
        c.exec_driver_sql("CREATE TABLE mrr_account_runs (site TEXT NOT NULL, account_id TEXT NOT NULL, "
                          "day_from DATE NOT NULL, day_to DATE NOT NULL, mrr NUMERIC(20, 6) NOT NULL, currency TEXT, "
                          "PRIMARY KEY (site, account_id, day_from)) WITHOUT ROWID")
        c.exec_driver_sql("INSERT INTO mrr_account_runs VALUES ('s1', 'a1', '2025-01-01', '2025-02-01', "
                          "1234567890.123456, 'JPY')")
    with pytest.raises(ValueError, match=r"mrr_account_runs: .*mrr \(up to 1234567890\.12345"):
        pipeline.prepare(engine)
    with engine.connect() as c:  # left as it was, for the user to rebuild
        assert c.exec_driver_sql("SELECT typeof(mrr) FROM mrr_account_runs").scalar() == "real"
    engine.dispose()


def test_an_amount_written_through_sqlalchemy_has_the_six_decimals_the_views_read(warehouse_url):
    from datetime import date

    engine = create_engine_from_url(warehouse_url)
    pipeline.prepare(engine)
    runs = tables.MRR_ACCOUNT_RUNS
    with engine.begin() as c:
        c.execute(runs.insert().values(site="s1", account_id="a1", day_from=date(2025, 1, 1), day_to=date(2025, 1, 3),
                                       mrr=Decimal("-12.5"), currency="USD"))
        c.execute(tables.CALENDAR.insert().values([{"day": date(2025, 1, d)} for d in (1, 2)]))
    with engine.connect() as c:
        stored = c.execute(sa.text("SELECT mrr FROM mrr_account_runs")).scalar()
        viewed = c.execute(sa.text("SELECT mrr FROM v_mrr_account_daily")).scalars().all()
    assert Decimal(str(stored)) == Decimal("-12.5") and [exact(v) for v in viewed] == [Decimal("-12.50")] * 2
    if engine.dialect.name == "sqlite":
        assert stored == "-12.500000"
    with pytest.raises(sa.exc.StatementError, match="more than 6 decimals"), engine.begin() as c:
        c.execute(runs.insert().values(site="s1", account_id="a2", day_from=date(2025, 1, 1), day_to=date(2025, 1, 3),
                                       mrr=Decimal("0.0000001"), currency="USD"))
    engine.dispose()


def test_a_month_off_by_a_micro_unit_does_not_reconcile(warehouse_url):
    from datetime import date

    from recurly_elt.transform import checks

    engine = create_engine_from_url(warehouse_url)
    pipeline.prepare(engine)
    row = dict(site="s1", account_id="a1", movement_type="expansion", currency="USD", as_of=date(2025, 1, 31))
    with engine.begin() as c:
        c.execute(tables.MRR_MOVEMENTS.insert().values([
            {**row, "month": date(2025, 1, 1), "opening_mrr": Decimal("0.10"), "movement": Decimal("0.20"),
             "closing_mrr": Decimal("0.30")},  # exact: 0.1 + 0.2 is 0.3 here
            {**row, "month": date(2025, 2, 1), "opening_mrr": Decimal("0.30"), "movement": Decimal("1.00"),
             "closing_mrr": Decimal("1.300001")}]))
    with pytest.raises(checks.DataQualityError, match=r"(?s)1 offending row.*month=2025-02-01"):
        checks.run_check(engine, "mrr_reconciles")
    engine.dispose()
