"""A small transformed warehouse for delivery tests: a sandbox business staged, then transformed
up to IMPORT_DAY (the one-time import's view), the 7 days after it transformed one at a time."""

from __future__ import annotations

from datetime import date, datetime, timedelta

from recurly_elt.transform import pipeline
from recurly_elt.warehouse.engine import create_engine_from_url

from tests.transform.staging_data import load_objects, simulation

UNTIL = date(2026, 1, 1)
IMPORT_DAY = UNTIL - timedelta(days=7)   # the import sees [history, IMPORT_DAY)
DAYS = [IMPORT_DAY + timedelta(days=i) for i in range(7)]
ACCOUNTS = 60


def end_of(day: date) -> datetime:
    return datetime.combine(day + timedelta(days=1), datetime.min.time())


_SIM = {}


def staged_engine(url: str, accounts: int = ACCOUNTS):
    """Staging loaded and transformed up to IMPORT_DAY (exclusive); the daily days come later."""
    if accounts not in _SIM:
        _SIM[accounts] = simulation(accounts=accounts, until=UNTIL).objects
    engine = create_engine_from_url(url)
    load_objects(engine, "sandbox", _SIM[accounts])
    pipeline.run(engine, UNTIL - timedelta(days=365), IMPORT_DAY, health_days=1)
    return engine


def transform_day(engine, day: date) -> None:
    pipeline.run(engine, day, day + timedelta(days=1))
