"""Revenue figures for the UI: MRR per site over time, monthly movements, plan segments.

Every function takes a `Reader` and returns plain, JSON-ready values computed by read-only SQL
over the transform's tables and views (docs/transform.md). Money is rounded to cents for display
only; the warehouse's values are not changed.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from itertools import groupby
from typing import Any

from recurly_elt.ui.warehouse import Reader

# The order of the waterfall's steps between the opening and closing bars.
MOVEMENT_TYPES = ("new", "expansion", "reactivation", "contraction", "churn", "adjustment")
RECONCILE_TOLERANCE = 0.005
CENT = Decimal("0.01")


def cents(value: Any) -> float:
    """An amount for the page, rounded half up to the cent (the warehouse's one rule; Python's
    round() of a double is half-even on its binary value: 0.125 would show 0.12)."""
    exact = value if isinstance(value, Decimal) else Decimal(str(value or 0))
    return float(exact.quantize(CENT, rounding=ROUND_HALF_UP))


def sites(r: Reader) -> list[str]:
    """The sites the warehouse knows, from whichever stage has run."""
    found: set[str] = set()
    for table in ("mrr_account_runs", "transform_run_log", "extract_run_log"):
        if r.has(table):
            found.update(row["site"] for row in r.rows(f"SELECT DISTINCT site FROM {table}"))
    return sorted(found)


def _site_filter(site: str | None, params: dict[str, Any], column: str = "site") -> str:
    if site is None:
        return "1 = 1"
    params["site"] = site
    return f"{column} = :site"


def mrr_over_time(r: Reader, site: str | None = None) -> dict[str, Any]:
    """Per site: MRR (reporting currency) on every day it changed, and on its last day.

    Computed from the account MRR runs (`mrr_account_runs`, one row per constant stretch) as a
    running sum of changes, which is what `v_mrr_account_daily` summed per day gives, without
    expanding every account over every day.
    """
    if not r.has("mrr_account_runs"):
        return {"available": False, "sites": []}
    params: dict[str, Any] = {}
    where = _site_filter(site, params)
    # Two aggregates on the runs' own columns (each a single pass) rather than one over their
    # union: MRR starts at day_from and stops at day_to.
    deltas: dict[tuple[str, str], float] = {}
    for column, sign in (("day_from", 1.0), ("day_to", -1.0)):
        for row in r.rows(f"SELECT site, {column} AS day, SUM(mrr) AS mrr FROM mrr_account_runs WHERE {where} "
                          f"GROUP BY site, {column}", **params):
            key = (row["site"], str(row["day"])[:10])
            deltas[key] = deltas.get(key, 0.0) + sign * float(row["mrr"] or 0.0)
    changes = [{"site": k[0], "day": k[1], "delta": v} for k, v in sorted(deltas.items())]
    last_days = {name: max(day for (n, day) in deltas if n == name) for name in {k[0] for k in deltas}}
    out = []
    for name, rows in groupby(changes, key=lambda row: row["site"]):
        days, values, running = [], [], 0.0
        end = last_days[name]
        for row in rows:
            running += float(row["delta"] or 0.0)
            if row["day"] >= end:  # the runs' exclusive end: nothing is known from there on
                break
            days.append(row["day"])
            values.append(cents(running))
        last_day = _day_before(end)
        if days and days[-1] != last_day:
            days.append(last_day)
            values.append(values[-1])
        out.append({"site": name, "days": days, "mrr": values, "last_day": last_day,
                    "last_mrr": values[-1] if values else 0.0})
    return {"available": True, "sites": out}


def _day_before(iso_day: str) -> str:
    from datetime import date, timedelta

    return (date.fromisoformat(iso_day[:10]) - timedelta(days=1)).isoformat()


def movement_months(r: Reader, site: str) -> list[dict[str, Any]]:
    """Every month of a site from `v_mrr_movements_by_month`, latest first, with its reconciliation."""
    if not r.has("v_mrr_movements_by_month"):
        return []
    rows = r.rows("""SELECT * FROM v_mrr_movements_by_month WHERE site = :site ORDER BY month DESC""", site=site)
    for row in rows:
        steps = sum(float(row[f"{t}_mrr"] or 0.0) for t in MOVEMENT_TYPES)
        row["difference"] = cents(float(row["opening_mrr"] or 0.0) + steps - float(row["closing_mrr"] or 0.0))
        row["reconciles"] = abs(row["difference"]) <= RECONCILE_TOLERANCE
        for key in ("opening_mrr", "closing_mrr", *(f"{t}_mrr" for t in MOVEMENT_TYPES)):
            row[key] = cents(row[key])
    return rows


def waterfall(month_row: dict[str, Any]) -> dict[str, Any]:
    """The waterfall of one month: opening, each movement type (adjustment only when non-zero), closing."""
    steps = [t for t in MOVEMENT_TYPES if t != "adjustment" or month_row["adjustment_mrr"]]
    return {
        "month": month_row["month"],
        "labels": ["opening", *steps, "closing"],
        "types": [None, *steps, None],
        "measure": ["absolute", *(["relative"] * len(steps)), "total"],
        "values": [month_row["opening_mrr"], *(month_row[f"{t}_mrr"] for t in steps), month_row["closing_mrr"]],
        "reconciles": month_row["reconciles"],
        "difference": month_row["difference"],
    }


def movement_accounts(r: Reader, site: str, month: str, movement_type: str, limit: int = 500) -> dict[str, Any]:
    """The accounts behind one bar of a month's waterfall, largest movement first."""
    if not r.has("mrr_movements_monthly"):
        return {"available": False, "accounts": [], "total": 0.0, "count": 0}
    name_join = ("LEFT JOIN stg_accounts a ON a.site = m.site AND a.id = m.account_id" if r.has("stg_accounts")
                 else "")
    name_cols = "a.code AS account_code, a.company AS company" if name_join else \
        "NULL AS account_code, NULL AS company"
    params = {"site": site, "month": month[:10], "movement_type": movement_type}
    where = "m.site = :site AND m.month = :month AND m.movement_type = :movement_type"
    rows = r.rows(f"""
        SELECT m.account_id, {name_cols}, m.opening_mrr, m.closing_mrr, m.movement
        FROM mrr_movements_monthly m {name_join}
        WHERE {where}
        ORDER BY ABS(m.movement) DESC, m.account_id LIMIT :limit""", limit=limit, **params)
    totals = r.rows(f"SELECT COUNT(*) AS n, SUM(m.movement) AS total FROM mrr_movements_monthly m WHERE {where}",
                    **params)[0]
    for row in rows:
        for key in ("opening_mrr", "closing_mrr", "movement"):
            row[key] = cents(row[key])
    return {"available": True, "site": site, "month": month[:10], "movement_type": movement_type,
            "count": int(totals["n"] or 0), "total": cents(totals["total"]), "accounts": rows,
            "shown": len(rows)}


def plan_segments(r: Reader, site: str) -> dict[str, Any]:
    """MRR and subscriptions by plan (and by plan, interval, MRR band, status for the table)."""
    if not r.has("v_plan_segment_summary"):
        return {"available": False, "plans": [], "rows": []}
    rows = r.rows("""
        SELECT plan_code, plan_name, plan_interval, mrr_band, status, subscriptions, paying_subscriptions,
               quantity, mrr_reporting, average_mrr_reporting
        FROM v_plan_segment_summary WHERE site = :site
        ORDER BY COALESCE(mrr_reporting, 0) DESC, plan_code, plan_interval, mrr_band, status""", site=site)
    plans: dict[str, dict[str, Any]] = {}
    for row in rows:  # per plan, from the rows already read (one pass over the view)
        p = plans.setdefault(row["plan_code"], {"plan_code": row["plan_code"], "plan_name": row["plan_name"],
                                                "mrr_reporting": 0.0, "paying_subscriptions": 0, "subscriptions": 0})
        p["mrr_reporting"] += float(row["mrr_reporting"] or 0.0)
        p["paying_subscriptions"] += int(row["paying_subscriptions"] or 0)
        p["subscriptions"] += int(row["subscriptions"] or 0)
    plans = sorted(plans.values(), key=lambda p: (-p["mrr_reporting"], str(p["plan_code"])))
    for row in rows + plans:
        row["mrr_reporting"] = cents(row["mrr_reporting"])
        if "average_mrr_reporting" in row:
            row["average_mrr_reporting"] = cents(row["average_mrr_reporting"])
    return {"available": True, "plans": plans, "rows": rows}


def reporting_currency() -> str:
    """The reporting currency of include/mappings/fx.yaml (the transform's setting)."""
    from recurly_elt.transform.config import TransformConfig

    return TransformConfig.load().reporting_currency
