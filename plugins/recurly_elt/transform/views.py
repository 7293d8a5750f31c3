"""Health views for analysts: plain SQL views over the transform's tables, valid on SQLite and
PostgreSQL alike (every column is documented in docs/transform.md).

  v_mrr_subscription_daily   MRR per subscription and day (runs expanded over calendar_days)
  v_mrr_account_daily        MRR per account and day (reporting currency)
  v_account_health           each account's health on the latest day computed
  v_subscription_overview    each subscription's plan segment, status and MRR
  v_mrr_movements_by_month   opening, new, expansion, contraction, churn, reactivation, closing
  v_plan_segment_summary     subscriptions and MRR by plan, interval, MRR band and status
"""

from __future__ import annotations

import sqlalchemy as sa

VIEWS: dict[str, str] = {
    "v_mrr_subscription_daily": """
        SELECT r.site, c.day, r.subscription_id, r.account_id, r.currency, r.mrr, r.mrr_reporting
        FROM mrr_subscription_runs r
        JOIN calendar_days c ON c.day >= r.day_from AND c.day < r.day_to""",
    "v_mrr_account_daily": """
        SELECT r.site, c.day, r.account_id, r.mrr
        FROM mrr_account_runs r
        JOIN calendar_days c ON c.day >= r.day_from AND c.day < r.day_to""",
    "v_account_health": """
        SELECT h.*
        FROM account_health_daily h
        WHERE h.day = (SELECT MAX(l.day) FROM account_health_daily l WHERE l.site = h.site)""",
    "v_subscription_overview": """
        SELECT o.*, CASE WHEN o.mrr > 0 THEN 1 ELSE 0 END AS is_paying
        FROM subscription_overview o""",
    "v_mrr_movements_by_month": """
        SELECT site, month,
               SUM(opening_mrr) AS opening_mrr,
               SUM(CASE WHEN movement_type = 'new' THEN movement ELSE 0 END) AS new_mrr,
               SUM(CASE WHEN movement_type = 'expansion' THEN movement ELSE 0 END) AS expansion_mrr,
               SUM(CASE WHEN movement_type = 'contraction' THEN movement ELSE 0 END) AS contraction_mrr,
               SUM(CASE WHEN movement_type = 'churn' THEN movement ELSE 0 END) AS churn_mrr,
               SUM(CASE WHEN movement_type = 'reactivation' THEN movement ELSE 0 END) AS reactivation_mrr,
               SUM(CASE WHEN movement_type = 'adjustment' THEN movement ELSE 0 END) AS adjustment_mrr,
               SUM(closing_mrr) AS closing_mrr,
               SUM(CASE WHEN movement_type = 'new' THEN 1 ELSE 0 END) AS new_accounts,
               SUM(CASE WHEN movement_type = 'churn' THEN 1 ELSE 0 END) AS churned_accounts,
               SUM(CASE WHEN movement_type = 'reactivation' THEN 1 ELSE 0 END) AS reactivated_accounts,
               SUM(CASE WHEN closing_mrr > 0 THEN 1 ELSE 0 END) AS paying_accounts
        FROM mrr_movements_monthly
        GROUP BY site, month""",
    "v_plan_segment_summary": """
        SELECT site, plan_code, plan_name, plan_interval, mrr_band, status,
               COUNT(*) AS subscriptions,
               SUM(CASE WHEN mrr > 0 THEN 1 ELSE 0 END) AS paying_subscriptions,
               SUM(quantity) AS quantity,
               SUM(mrr_reporting) AS mrr_reporting,
               AVG(CASE WHEN mrr > 0 THEN mrr_reporting END) AS average_mrr_reporting
        FROM subscription_overview
        GROUP BY site, plan_code, plan_name, plan_interval, mrr_band, status""",
}


def create_views(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        for name, body in VIEWS.items():
            conn.exec_driver_sql(f"DROP VIEW IF EXISTS {name}")
            conn.exec_driver_sql(f"CREATE VIEW {name} AS {body}")
