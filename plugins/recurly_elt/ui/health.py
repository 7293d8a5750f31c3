"""Account-health figures for the UI: accounts by band, the at-risk list, one account over time.

Band names come from the data (`health_band` of `v_account_health`), ordered as `health.yaml` lists
them (best first) when it names them; a band the configuration does not know is still shown,
after the known ones. Alert columns are every `alert_*` column of the view except the count, so
a new alert appears without a change here.
"""

from __future__ import annotations

from typing import Any

from recurly_elt.ui.revenue import cents
from recurly_elt.ui.warehouse import Reader

AT_RISK_LIMIT = 200
ACCOUNT_EVENTS_LIMIT = 500


def configured_band_order() -> list[str]:
    """Band labels of health.yaml, best (highest lower bound) first; [] if it cannot be read."""
    from recurly_elt.transform.config import TransformConfig

    try:
        bands = TransformConfig.load().health.get("bands") or []
        return [str(label) for label, _low in sorted(bands, key=lambda b: -float(b[1]))]
    except Exception:  # a changed or missing file: order by the data alone
        return []


def ordered_bands(found: set[str]) -> list[str]:
    known = [b for b in configured_band_order() if b in found]
    return known + sorted(b for b in found if b not in known)


def latest_days(r: Reader) -> dict[str, str]:
    """Each site's latest day of health: the day `v_account_health` shows. Asked per site, so it
    is one seek in the (site, day, account) key instead of the view's scan of every day."""
    from recurly_elt.ui.revenue import sites

    days = {}
    for site in sites(r):
        day = r.scalar("SELECT MAX(day) FROM account_health_daily WHERE site = :site", site=site)
        if day is not None:
            days[site] = str(day)[:10]
    return days


def _latest(r: Reader, params: dict[str, Any], site: str | None = None) -> str:
    """The rows of `v_account_health` (of one site, or of all), as a condition on the table's key."""
    days = latest_days(r)
    if site is not None:
        days = {site: days[site]} if site in days else {}
    if not days:
        return "1 = 0"
    parts = []
    for i, (name, day) in enumerate(sorted(days.items())):
        params[f"site_{i}"], params[f"day_{i}"] = name, day
        parts.append(f"(h.site = :site_{i} AND h.day = :day_{i})")
    return "(" + " OR ".join(parts) + ")"


def band_distribution(r: Reader) -> dict[str, Any]:
    """Per site: accounts and MRR in each band, on the latest day computed."""
    if not r.has("account_health_daily"):
        return {"available": False, "bands": [], "sites": []}
    params: dict[str, Any] = {}
    rows = r.rows(f"""
        SELECT h.site, MAX(h.day) AS day, COALESCE(h.health_band, '(none)') AS band,
               COUNT(*) AS accounts, SUM(h.mrr) AS mrr
        FROM account_health_daily h WHERE {_latest(r, params)}
        GROUP BY h.site, COALESCE(h.health_band, '(none)') ORDER BY h.site""", **params)
    bands = ordered_bands({row["band"] for row in rows})
    sites: dict[str, dict[str, Any]] = {}
    for row in rows:
        s = sites.setdefault(row["site"], {"site": row["site"], "day": row["day"],
                                            "accounts": {b: 0 for b in bands}, "mrr": {b: 0.0 for b in bands}})
        s["accounts"][row["band"]] = int(row["accounts"])
        s["mrr"][row["band"]] = cents(row["mrr"])
    return {"available": True, "bands": bands, "sites": list(sites.values())}


def alert_columns(r: Reader) -> list[str]:
    import sqlalchemy as sa

    columns = [c["name"] for c in sa.inspect(r.conn).get_columns("account_health_daily")]
    return [c for c in columns if c.startswith("alert_") and c != "alert_count"]


def at_risk(r: Reader, site: str | None = None, limit: int = AT_RISK_LIMIT) -> dict[str, Any]:
    """Accounts with at least one alert, most MRR at risk first."""
    if not r.has("account_health_daily"):
        return {"available": False, "accounts": [], "alerts": []}
    alerts = alert_columns(r)
    params: dict[str, Any] = {"limit": limit}
    where = f"{_latest(r, params, site)} AND h.alert_count > 0"
    cols = ", ".join(f"h.{c}" for c in alerts)
    rows = r.rows(f"""
        SELECT h.site, h.day, h.account_id, h.account_code, h.account_status, h.mrr, h.health_score,
               h.health_band, h.days_to_renewal, h.overdue_amount, h.alert_count{', ' + cols if cols else ''}
        FROM account_health_daily h WHERE {where}
        ORDER BY COALESCE(CAST(h.mrr AS NUMERIC), 0) DESC, h.alert_count DESC, h.site, h.account_id
        LIMIT :limit""", **params)  # CAST: SQLite stores the amount as its decimal text
    totals = r.rows(f"SELECT COUNT(*) AS n, SUM(h.mrr) AS mrr FROM account_health_daily h WHERE {where}",
                    **{k: v for k, v in params.items() if k != "limit"})[0]
    for row in rows:
        row["mrr"] = cents(row["mrr"])
        row["overdue_amount"] = cents(row["overdue_amount"])
        row["alerts"] = [a.removeprefix("alert_").replace("_", " ") for a in alerts if row.pop(a)]
    return {"available": True, "alerts": alerts, "accounts": rows, "count": int(totals["n"] or 0),
            "mrr_at_risk": cents(totals["mrr"]), "shown": len(rows)}


def find_account(r: Reader, site: str, key: str) -> str | None:
    """The account id of an account id or code on a site (staging first, then the latest health)."""
    if r.has("stg_accounts"):
        found = r.scalar("SELECT id FROM stg_accounts WHERE site = :site AND (id = :key OR code = :key) LIMIT 1",
                         site=site, key=key)
        if found:
            return found
    if r.has("account_health_daily"):
        params: dict[str, Any] = {"key": key}
        return r.scalar(f"""SELECT h.account_id FROM account_health_daily h WHERE {_latest(r, params, site)}
                            AND (h.account_id = :key OR h.account_code = :key) LIMIT 1""", **params)
    return None


def account_history(r: Reader, site: str, account_id: str) -> dict[str, Any]:
    """One account: health score and band per day, MRR runs, lifecycle events (latest first)."""
    out: dict[str, Any] = {"site": site, "account_id": account_id, "health": [], "mrr": [], "events": [],
                           "latest": None}
    if r.has("account_health_daily"):
        # Day by day through the calendar: one seek per day in the (site, day, account) key,
        # where a filter on the account alone would read every account's health.
        out["health"] = r.rows("""
            SELECT h.day, h.health_score, h.health_band, h.account_status, h.mrr, h.alert_count, h.days_to_renewal
            FROM calendar_days c CROSS JOIN account_health_daily h
            WHERE h.site = :site AND h.day = c.day AND h.account_id = :account_id ORDER BY h.day""",
                               site=site, account_id=account_id)
        if out["health"]:
            out["latest"] = r.rows("""
                SELECT * FROM account_health_daily WHERE site = :site AND day = :day AND account_id = :account_id""",
                                   site=site, day=out["health"][-1]["day"], account_id=account_id)[0]
    if r.has("mrr_account_runs"):
        out["mrr"] = [{**row, "mrr": cents(row["mrr"])} for row in r.rows("""
            SELECT day_from, day_to, mrr FROM mrr_account_runs
            WHERE site = :site AND account_id = :account_id ORDER BY day_from""", site=site, account_id=account_id)]
    if r.has("lifecycle_events"):
        out["events"] = r.rows("""
            SELECT occurred_at, event_name, subscription_id, invoice_id, plan_code, amount, currency, detail
            FROM lifecycle_events WHERE site = :site AND account_id = :account_id
            ORDER BY occurred_at DESC LIMIT :limit""", site=site, account_id=account_id, limit=ACCOUNT_EVENTS_LIMIT)
    return out
