"""Health views for analysts: plain SQL views over the transform's tables, valid on SQLite and
PostgreSQL alike (every column is documented in docs/transform.md).

Money is rounded to the cent (exact already in the tables; the sums of SQLite's REAL columns are
rounded again), each amount has its currency column, and every summary view says the day it
describes (`as_of`).

  v_accounts                 the staged accounts' profile fields, blank text ("") as NULL
  v_mrr_subscription_daily   MRR per subscription and day (runs expanded over calendar_days)
  v_mrr_account_daily        MRR per account and day (reporting currency)
  v_account_health           each account's health on the latest day computed
  v_subscription_overview    each subscription's plan segment, status and MRR
  v_mrr_movements_by_month   opening, new, expansion, contraction, churn, reactivation, closing
  v_plan_segment_summary     subscriptions and MRR by plan, interval, MRR band and status
"""

from __future__ import annotations

import sqlalchemy as sa

# The accounts' text fields a destination keys or personalises on: Recurly sends unset text as "",
# staging keeps it as sent, readers get NULL (a blank email is no email).
ACCOUNT_TEXT = ("code", "state", "email", "first_name", "last_name", "company", "preferred_locale", "country",
                "parent_account_id", "bill_to", "billing_info_id", "card_type")

VIEWS: dict[str, str] = {
    "v_accounts": f"""
        SELECT site, id AS account_id, {", ".join(f"NULLIF({c}, '') AS {c}" for c in ACCOUNT_TEXT)},
               has_live_subscription, has_active_subscription, has_past_due_invoice, billing_info_valid,
               card_exp_month, card_exp_year, created_at, updated_at, deleted_at
        FROM stg_accounts""",
    "v_mrr_subscription_daily": """
        SELECT r.site, c.day, r.subscription_id, r.account_id, r.currency, ROUND(r.mrr, 2) AS mrr,
               ROUND(r.mrr_reporting, 2) AS mrr_reporting, r.reporting_currency
        FROM mrr_subscription_runs r
        JOIN calendar_days c ON c.day >= r.day_from AND c.day < r.day_to""",
    "v_mrr_account_daily": """
        SELECT r.site, c.day, r.account_id, ROUND(r.mrr, 2) AS mrr, r.currency
        FROM mrr_account_runs r
        JOIN calendar_days c ON c.day >= r.day_from AND c.day < r.day_to""",
    "v_account_health": """
        SELECT h.*, h.day AS as_of
        FROM account_health_daily h
        WHERE h.day = (SELECT MAX(l.day) FROM account_health_daily l WHERE l.site = h.site)""",
    "v_subscription_overview": """
        SELECT o.*, CASE WHEN o.mrr > 0 THEN 1 ELSE 0 END AS is_paying
        FROM subscription_overview o""",
    "v_mrr_movements_by_month": """
        SELECT site, month, currency,
               ROUND(SUM(opening_mrr), 2) AS opening_mrr,
               ROUND(SUM(CASE WHEN movement_type = 'new' THEN movement ELSE 0 END), 2) AS new_mrr,
               ROUND(SUM(CASE WHEN movement_type = 'expansion' THEN movement ELSE 0 END), 2) AS expansion_mrr,
               ROUND(SUM(CASE WHEN movement_type = 'contraction' THEN movement ELSE 0 END), 2) AS contraction_mrr,
               ROUND(SUM(CASE WHEN movement_type = 'churn' THEN movement ELSE 0 END), 2) AS churn_mrr,
               ROUND(SUM(CASE WHEN movement_type = 'reactivation' THEN movement ELSE 0 END), 2) AS reactivation_mrr,
               ROUND(SUM(CASE WHEN movement_type = 'adjustment' THEN movement ELSE 0 END), 2) AS adjustment_mrr,
               ROUND(SUM(closing_mrr), 2) AS closing_mrr,
               SUM(CASE WHEN movement_type = 'new' THEN 1 ELSE 0 END) AS new_accounts,
               SUM(CASE WHEN movement_type = 'churn' THEN 1 ELSE 0 END) AS churned_accounts,
               SUM(CASE WHEN movement_type = 'reactivation' THEN 1 ELSE 0 END) AS reactivated_accounts,
               SUM(CASE WHEN closing_mrr > 0 THEN 1 ELSE 0 END) AS paying_accounts,
               MAX(as_of) AS as_of
        FROM mrr_movements_monthly
        GROUP BY site, month, currency""",
    "v_plan_segment_summary": """
        SELECT site, plan_code, plan_name, plan_interval, mrr_band, status, reporting_currency,
               COUNT(*) AS subscriptions,
               SUM(CASE WHEN mrr > 0 THEN 1 ELSE 0 END) AS paying_subscriptions,
               SUM(quantity) AS quantity,
               ROUND(SUM(mrr_reporting), 2) AS mrr_reporting,
               ROUND(AVG(CASE WHEN mrr > 0 THEN mrr_reporting END), 2) AS average_mrr_reporting,
               MAX(as_of) AS as_of
        FROM subscription_overview
        GROUP BY site, plan_code, plan_name, plan_interval, mrr_band, status, reporting_currency""",
}


def create_views(engine: sa.Engine) -> None:
    from recurly_elt.staging.load import ensure_staging_tables

    ensure_staging_tables(engine)  # v_accounts reads stg_accounts
    with engine.begin() as conn:
        for name, body in VIEWS.items():
            conn.exec_driver_sql(f"DROP VIEW IF EXISTS {name}")
            conn.exec_driver_sql(f"CREATE VIEW {name} AS {body}")
