"""Health views for analysts: plain SQL views over the transform's tables, on SQLite and
PostgreSQL alike (every column is documented in docs/transform.md).

Money is rounded to the cent, half up, from the exact amounts the tables store (`Money`): on
PostgreSQL in NUMERIC, on SQLite in integer micro-units parsed from the stored decimal text
(`Amounts`), so a sum of amounts is exact on both before its one rounding. Each amount has its
currency column, and every summary view says the day it describes (`as_of`). SQLite has no
decimal type: its views give the rounded amount as the double nearest to it (one conversion of the
exact cents, at the end: its shortest text is the amount), a number an analyst can sort and chart.
Exact readers (the destinations) read the tables, whose amounts are the exact decimals.

  v_accounts                 the staged accounts' profile fields, blank text ("") as NULL
  v_mrr_subscription_daily   MRR per subscription and day (runs expanded over calendar_days)
  v_mrr_account_daily        MRR per account and day (reporting currency)
  v_latest_health_day        each site's latest day in account_health_daily (a key lookup per site)
  v_account_health           each account's health on the latest day computed
  v_subscription_overview    each subscription's plan segment, status and MRR
  v_mrr_movements_by_month   opening, new, expansion, contraction, churn, reactivation, closing
  v_plan_segment_summary     subscriptions and MRR by plan, interval, MRR band and status
"""

from __future__ import annotations

from typing import Callable

import sqlalchemy as sa

from recurly_elt.transform import tables as t

# The accounts' text fields a destination keys or personalises on: Recurly sends unset text as "",
# staging keeps it as sent, readers get NULL (a blank email is no email).
ACCOUNT_TEXT = ("code", "state", "email", "first_name", "last_name", "company", "preferred_locale", "country",
                "parent_account_id", "bill_to", "billing_info_id", "card_type")


class Amounts:
    """SQL of exact money for one dialect. `exact(col)` is a stored amount of a mart as a value SQL
    adds and compares exactly (PostgreSQL: the NUMERIC itself; SQLite: integer micro-units from its
    six-decimal text); `cents(expr)` rounds such a value (or a SUM of them) half up to the cent, once."""

    def __init__(self, dialect: str):
        self.sqlite = dialect == "sqlite"

    def exact(self, col: str) -> str:
        if not self.sqlite:
            return col
        # '-12.500000' -> -12500000: a mart's amount is stored with exactly six decimals
        # (warehouse/types.py `MartMoney`), so without its point it is its micro-units.
        return f"CAST(REPLACE({col}, '.', '') AS INTEGER)"

    def cents(self, expr: str) -> str:
        if not self.sqlite:
            return f"ROUND({expr}, 2)"
        return self._half_up_cents(f"({expr})")

    def amount(self, col: str) -> str:
        return self.cents(self.exact(col))

    def total(self, expr: str) -> str:
        """The sum of exact values (`exact` or a CASE of them), rounded once."""
        return self.cents(f"SUM({expr})")

    def average(self, expr: str) -> str:
        if not self.sqlite:
            return f"ROUND(AVG({expr}), 2)"
        return self._half_up_cents(f"SUM({expr})", f"COUNT({expr})")

    @staticmethod
    def _half_up_cents(micros: str, count: str = "1") -> str:
        """SQLite: `micros` / `count` in cents (10,000 micro-units), half away from zero, in integers
        (integer division truncates toward zero, so the halves are added to the magnitude)."""
        unit = f"({count} * 10000)"
        return f"((CASE WHEN {micros} < 0 THEN -1 ELSE 1 END) * ((2 * ABS({micros}) + {unit}) / (2 * {unit})) / 100.0)"

    def columns(self, table: sa.Table, alias: str) -> str:
        """Every column of a mart, its amounts rounded to the cent."""
        return ", ".join(f"{self.amount(f'{alias}.{c.name}')} AS {c.name}" if c.info.get("money")
                         else f"{alias}.{c.name}" for c in table.columns)


def _movements(a: Amounts) -> str:
    kinds = ("new", "expansion", "contraction", "churn", "reactivation", "adjustment")
    movement = a.exact("movement")
    by_kind = ",\n               ".join(
        a.total(f"CASE WHEN movement_type = '{k}' THEN {movement} ELSE 0 END") + f" AS {k}_mrr" for k in kinds)
    return f"""
        SELECT site, month, currency,
               {a.total(a.exact('opening_mrr'))} AS opening_mrr,
               {by_kind},
               {a.total(a.exact('closing_mrr'))} AS closing_mrr,
               SUM(CASE WHEN movement_type = 'new' THEN 1 ELSE 0 END) AS new_accounts,
               SUM(CASE WHEN movement_type = 'churn' THEN 1 ELSE 0 END) AS churned_accounts,
               SUM(CASE WHEN movement_type = 'reactivation' THEN 1 ELSE 0 END) AS reactivated_accounts,
               SUM(CASE WHEN {a.exact('closing_mrr')} > 0 THEN 1 ELSE 0 END) AS paying_accounts,
               MAX(as_of) AS as_of
        FROM mrr_movements_monthly
        GROUP BY site, month, currency"""


# Each site's latest health day: the sites from the accounts' key (a scan of the accounts, which
# does not grow with the days stored), then one lookup of the table's key (site, day, account_id)
# per site. The plain `MAX(day) ... GROUP BY site`, or a `MAX` per health row, reads every stored
# day, and a daily sync stores one more day of every account each day. Inlined in v_account_health, not read
# through v_latest_health_day: a view over a view could not be dropped and recreated on PostgreSQL.
LATEST_HEALTH_DAY = """SELECT s.site, (SELECT MAX(d.day) FROM account_health_daily d WHERE d.site = s.site) AS day
        FROM (SELECT DISTINCT site FROM stg_accounts) s"""

VIEWS: dict[str, Callable[[Amounts], str]] = {
    "v_accounts": lambda a: f"""
        SELECT site, id AS account_id, {", ".join(f"NULLIF({c}, '') AS {c}" for c in ACCOUNT_TEXT)},
               has_live_subscription, has_active_subscription, has_past_due_invoice, billing_info_valid,
               card_exp_month, card_exp_year, created_at, updated_at, deleted_at
        FROM stg_accounts""",
    "v_mrr_subscription_daily": lambda a: f"""
        SELECT r.site, c.day, r.subscription_id, r.account_id, r.currency, {a.amount('r.mrr')} AS mrr,
               {a.amount('r.mrr_reporting')} AS mrr_reporting, r.reporting_currency
        FROM mrr_subscription_runs r
        JOIN calendar_days c ON c.day >= r.day_from AND c.day < r.day_to""",
    "v_mrr_account_daily": lambda a: f"""
        SELECT r.site, c.day, r.account_id, {a.amount('r.mrr')} AS mrr, r.currency
        FROM mrr_account_runs r
        JOIN calendar_days c ON c.day >= r.day_from AND c.day < r.day_to""",
    "v_latest_health_day": lambda a: LATEST_HEALTH_DAY,
    "v_account_health": lambda a: f"""
        SELECT {a.columns(t.ACCOUNT_HEALTH, 'h')}, h.day AS as_of
        FROM ({LATEST_HEALTH_DAY}) l
        JOIN account_health_daily h ON h.site = l.site AND h.day = l.day""",
    "v_subscription_overview": lambda a: f"""
        SELECT {a.columns(t.SUBSCRIPTION_OVERVIEW, 'o')},
               CASE WHEN {a.exact('o.mrr')} > 0 THEN 1 ELSE 0 END AS is_paying
        FROM subscription_overview o""",
    "v_mrr_movements_by_month": _movements,
    "v_plan_segment_summary": lambda a: f"""
        SELECT site, plan_code, plan_name, plan_interval, mrr_band, status, reporting_currency,
               COUNT(*) AS subscriptions,
               SUM(CASE WHEN {a.exact('mrr')} > 0 THEN 1 ELSE 0 END) AS paying_subscriptions,
               SUM(quantity) AS quantity,
               {a.total(a.exact('mrr_reporting'))} AS mrr_reporting,
               {a.average(f"CASE WHEN {a.exact('mrr')} > 0 THEN {a.exact('mrr_reporting')} END")}
                   AS average_mrr_reporting,
               MAX(as_of) AS as_of
        FROM subscription_overview
        GROUP BY site, plan_code, plan_name, plan_interval, mrr_band, status, reporting_currency""",
}


def create_views(engine: sa.Engine) -> None:
    from recurly_elt.staging.load import ensure_staging_tables

    ensure_staging_tables(engine)  # v_accounts reads stg_accounts
    amounts = Amounts(engine.dialect.name)
    with engine.begin() as conn:
        for name, body in VIEWS.items():
            conn.exec_driver_sql(f"DROP VIEW IF EXISTS {name}")
            conn.exec_driver_sql(f"CREATE VIEW {name} AS {body(amounts)}")
