"""The transform's MRR tables against the independent computation (independent.py), to the cent."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, timedelta
from decimal import Decimal

import pandas as pd
import sqlalchemy as sa

from . import independent


def _stored(value) -> Decimal | None:
    """A stored amount as the decimal it is (PostgreSQL: a Decimal; SQLite: its decimal text),
    compared exactly: never read through a float, never rounded here (the transform rounded it)."""
    if value is None:
        return None
    assert not isinstance(value, float), f"amount {value!r} read back as a binary float"
    return Decimal(str(value))


def assert_agrees_to_the_cent(engine, site: str, first: date, last: date) -> int:
    """Every subscription-day (as runs) and every (month, account) movement of the transform equal
    the independent computation's, to the cent. Returns the number of movement rows compared."""
    reference = independent.IndependentMrr(engine, site)
    with engine.connect() as c:
        stored = c.execute(sa.text("SELECT subscription_id, day_from, day_to, mrr, mrr_reporting "
                                   "FROM mrr_subscription_runs WHERE site = :s"), {"s": site}).all()
        got = pd.read_sql_query(sa.text("SELECT month, account_id, opening_mrr, closing_mrr, movement, movement_type "
                                        "FROM mrr_movements_monthly WHERE site = :s"), c, params={"s": site},
                                coerce_float=False)
    cents = _stored
    actual_runs = defaultdict(list)
    for sid, day_from, day_to, mrr_value, reporting in stored:
        actual_runs[sid].append((pd.Timestamp(day_from).date(), pd.Timestamp(day_to).date(), cents(mrr_value),
                                 cents(reporting)))
    end = last + timedelta(days=1)  # the transform wrote the days [first, end)
    expected_runs = {sid: [(max(r.day_from, first), min(r.day_to, end), r.mrr, r.mrr_reporting)
                           for r in runs if r.day_from < end and r.day_to > first]
                     for sid, runs in reference.runs.items()}
    expected_runs = {sid: runs for sid, runs in expected_runs.items() if runs}
    assert set(actual_runs) == set(expected_runs)
    for sid, runs in expected_runs.items():
        assert sorted(actual_runs[sid]) == runs, sid
    expected = independent.movements(reference.account_mrr_at_month_ends(first, last))
    got["month"] = pd.to_datetime(got["month"]).dt.date
    actual = {(r.month, r.account_id): (cents(r.opening_mrr), cents(r.closing_mrr), r.movement_type)
              for r in got.itertuples()}
    assert set(actual) == set(expected)
    for key, value in expected.items():
        assert actual[key] == value, (key, actual[key], value)
    assert all(cents(m) == cents(c) - cents(o)  # exactly: no tolerance
               for o, c, m in got[["opening_mrr", "closing_mrr", "movement"]].itertuples(index=False))
    return len(expected)
