"""Data-quality checks over the transform's tables: each is a query returning the offending rows.

A check passes when its query returns nothing; otherwise `run_check` raises DataQualityError with
the check's name, the count and the first rows, so a failed DAG task says which rows are wrong.
Written in SQL valid on SQLite and PostgreSQL; `{column}` is a mart amount as an exact value
(transform/views.py `Amounts.exact`: NUMERIC, or integer micro-units on SQLite), so money is
compared exactly, with no tolerance.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

SHOWN_ROWS = 20


@dataclass(frozen=True)
class Check:
    name: str
    description: str
    sql: str
    tables: tuple[str, ...] = ()  # what it reads: their row counts are logged as "rows checked"


CHECKS: dict[str, Check] = {c.name: c for c in (
    Check("mrr_reconciles",
          "per account and month: opening + movement = closing, and opening = the closing of the "
          "account's previous row (a month without a row had no MRR at either end)",
          """SELECT * FROM (
                 SELECT site, month, account_id, opening_mrr, movement, closing_mrr,
                        LAG(closing_mrr) OVER (PARTITION BY site, account_id ORDER BY month) AS previous_closing
                 FROM mrr_movements_monthly) m
             WHERE {opening_mrr} + {movement} <> {closing_mrr}
                OR COALESCE({previous_closing}, {opening_mrr}) <> {opening_mrr}""",
          ("mrr_movements_monthly",)),
    Check("no_overlapping_mrr_runs",
          "no subscription or account has two MRR runs covering the same day (no duplicate daily keys)",
          """SELECT a.site, a.subscription_id AS key, a.day_from, a.day_to, b.day_from AS other_from
             FROM mrr_subscription_runs a JOIN mrr_subscription_runs b
               ON a.site = b.site AND a.subscription_id = b.subscription_id AND a.day_from < b.day_from
              AND b.day_from < a.day_to
             UNION ALL
             SELECT a.site, a.account_id, a.day_from, a.day_to, b.day_from
             FROM mrr_account_runs a JOIN mrr_account_runs b
               ON a.site = b.site AND a.account_id = b.account_id AND a.day_from < b.day_from
              AND b.day_from < a.day_to""",
          ("mrr_subscription_runs", "mrr_account_runs")),
    Check("no_duplicate_keys",
          "no duplicate event, health or overview keys",
          """SELECT 'lifecycle_events' AS tbl, event_id AS key, COUNT(*) AS n FROM lifecycle_events
             GROUP BY event_id HAVING COUNT(*) > 1
             UNION ALL
             SELECT 'account_health_daily', site || '/' || account_id, COUNT(*) FROM account_health_daily
             GROUP BY site, day, account_id HAVING COUNT(*) > 1
             UNION ALL
             SELECT 'subscription_overview', site || '/' || subscription_id, COUNT(*) FROM subscription_overview
             GROUP BY site, subscription_id HAVING COUNT(*) > 1""",
          ("lifecycle_events", "account_health_daily", "subscription_overview")),
    Check("no_negative_mrr",
          "no subscription, account or month has negative MRR",
          """SELECT 'subscription' AS level, site, subscription_id AS id, day_from, mrr FROM mrr_subscription_runs
             WHERE {mrr} < 0
             UNION ALL
             SELECT 'account', site, account_id, day_from, mrr FROM mrr_account_runs WHERE {mrr} < 0""",
          ("mrr_subscription_runs", "mrr_account_runs")),
    Check("active_subscription_has_plan",
          "every live subscription names a plan that is staged",
          """SELECT o.site, o.subscription_id, o.status, o.plan_code
             FROM subscription_overview o
             WHERE o.status IN ('active', 'in_trial', 'canceling', 'past_due', 'paused')
               AND (o.plan_code IS NULL OR NOT EXISTS (
                    SELECT 1 FROM stg_plans p WHERE p.site = o.site AND p.code = o.plan_code))""",
          ("subscription_overview",)),
)}


class DataQualityError(Exception):
    def __init__(self, message: str, offending_rows: int = 0):
        super().__init__(message)
        self.offending_rows = offending_rows


class _Exact(dict):
    """`{column}` of a check's SQL -> that amount as an exact value of the dialect."""

    def __init__(self, dialect: str):
        super().__init__()
        from recurly_elt.transform.views import Amounts

        self.amounts = Amounts(dialect)

    def __missing__(self, column: str) -> str:
        return self.amounts.exact(column)


def offending_rows(engine: sa.Engine, name: str) -> tuple[list[str], list[tuple]]:
    check = CHECKS[name]
    with engine.connect() as conn:
        result = conn.execute(sa.text(check.sql.format_map(_Exact(engine.dialect.name))))
        return list(result.keys()), [tuple(r) for r in result.fetchall()]


def checked_rows(engine: sa.Engine, name: str) -> dict[str, int]:
    """Rows in each table a check reads (what "checked N rows" means in its log line)."""
    with engine.connect() as conn:
        return {t: int(conn.execute(sa.text(f"SELECT COUNT(*) FROM {t}")).scalar() or 0) for t in CHECKS[name].tables}


def run_check(engine: sa.Engine, name: str) -> int:
    """Run one check; raise DataQualityError naming the offending rows. Returns 0 rows on success."""
    if name not in CHECKS:
        raise KeyError(f"unknown data-quality check {name!r}; known: {', '.join(CHECKS)}")
    columns, rows = offending_rows(engine, name)
    if rows:
        shown = "\n".join("  " + ", ".join(f"{c}={v}" for c, v in zip(columns, r)) for r in rows[:SHOWN_ROWS])
        more = f"\n  ... and {len(rows) - SHOWN_ROWS} more" if len(rows) > SHOWN_ROWS else ""
        raise DataQualityError(f"check {name} failed ({CHECKS[name].description}): {len(rows)} "
                               f"offending row(s):\n{shown}{more}", offending_rows=len(rows))
    return 0
