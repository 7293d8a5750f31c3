"""A short health summary of the warehouse, printed by `make run` after the backfill.

    MRR (USD) on 2026-01-01: 91,647.80 over 401 paying accounts   [per site when several]
    Movements in 2025-12: new +8,166.85 (39), expansion +2,058.57, contraction -508.20,
                          churn -456.92 (7), reactivation +934.20 (1)
    Accounts by health band: Good 380, Average 40, Poor 12, Trial 9, Not a customer 20, Churned 39
"""

from __future__ import annotations

from decimal import Decimal

import sqlalchemy as sa

from recurly_elt.transform.config import TransformConfig


def _money(value: Decimal | float | None, sign: bool = False) -> str:
    """A view's amount (PostgreSQL: a Decimal; SQLite: the double nearest the cents, whose repr is
    them) as text, through the decimal it stands for, never formatted from the binary value."""
    exact = Decimal(0) if value is None else value if isinstance(value, Decimal) else Decimal(repr(value))
    return f"{exact:{'+' if sign else ''},.2f}"


def health_summary(engine: sa.Engine) -> str:
    """MRR, the last month's movements and accounts by health band, per site; a clear line when the
    transform has not run yet."""
    currency = TransformConfig.load().reporting_currency
    with engine.connect() as conn:
        if not sa.inspect(conn).has_table("mrr_movements_monthly"):
            return "Health summary: no transform output yet (the transform tasks have not run)."
        months = conn.execute(sa.text(
            "SELECT * FROM v_mrr_movements_by_month m WHERE m.month = "
            "(SELECT MAX(month) FROM mrr_movements_monthly x WHERE x.site = m.site) ORDER BY site")).mappings().all()
        bands = conn.execute(sa.text(
            "SELECT site, COALESCE(health_band, 'n/a') AS band, COUNT(*) AS n, MAX(day) AS day "
            "FROM v_account_health GROUP BY site, COALESCE(health_band, 'n/a') ORDER BY site, band")).mappings().all()
        as_of = dict(conn.execute(sa.text("SELECT site, MAX(as_of) FROM mrr_movements_monthly GROUP BY site")).all())
    if not months:
        return "Health summary: the transform ran but found no MRR yet."
    lines = []
    for m in months:
        site = m["site"]
        prefix = f"[{site}] " if len(months) > 1 else ""
        lines.append(f"{prefix}MRR ({currency}) on {str(as_of.get(site))[:10]}: {_money(m['closing_mrr'])} "
                     f"over {m['paying_accounts']} paying accounts")
        lines.append(
            f"{prefix}Movements in {str(m['month'])[:7]}: new {_money(m['new_mrr'], True)} ({m['new_accounts']}), "
            f"expansion {_money(m['expansion_mrr'], True)}, contraction {_money(m['contraction_mrr'], True)}, "
            f"churn {_money(m['churn_mrr'], True)} ({m['churned_accounts']}), "
            f"reactivation {_money(m['reactivation_mrr'], True)} ({m['reactivated_accounts']})")
        site_bands = [b for b in bands if b["site"] == site]
        order = {"Good": 0, "Average": 1, "Poor": 2, "Trial": 3, "Not a customer": 4, "Churned": 5}
        shown = ", ".join(f"{b['band']} {b['n']}" for b in sorted(site_bands, key=lambda b: order.get(b["band"], 9)))
        lines.append(f"{prefix}Accounts by health band: {shown or 'no health computed yet'}")
    return "\n".join(lines)
