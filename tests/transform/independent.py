"""MRR and movements computed again, independently of the transform: plain Python over the raw
JSON kept in staging, one object and one day at a time (no pandas, no shared code). It follows the
definitions of docs/transform.md word for word, so any disagreement is a bug on one side."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import date, datetime, timedelta

import sqlalchemy as sa
import yaml

from recurly_elt.transform.config import mappings_dir


def _raw(engine: sa.Engine, table: str, site: str) -> list[dict]:
    with engine.connect() as c:
        return [json.loads(r[0]) for r in c.execute(sa.text(f"SELECT raw_json FROM {table} WHERE site = :s"), {"s": site})]


def _day(value: str | None) -> date | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).date() if value else None


def month_ends(first: date, last: date) -> list[date]:
    out, d = [], date(first.year, first.month, 1)
    while d <= last:
        nxt = date(d.year + d.month // 12, d.month % 12 + 1, 1)
        out.append(min(nxt - timedelta(days=1), last))
        d = nxt
    return out


def account_mrr_at_month_ends(engine: sa.Engine, site: str, first: date, last: date) -> dict[date, dict[str, float]]:
    folder = mappings_dir()
    fx = yaml.safe_load(open(folder / "fx.yaml"))
    opts = yaml.safe_load(open(folder / "mrr.yaml"))
    rates = {k.upper(): float(v) for k, v in fx["rates"].items()}
    plans = {p["id"]: p for p in _raw(engine, "stg_plans", site)}
    usage = {a["id"] for a in _raw(engine, "stg_plan_add_ons", site) if a.get("add_on_type") == "usage"}
    bad_invoices = {i["id"] for i in _raw(engine, "stg_invoices", site)
                    if i.get("state") in opts["excluded_invoice_states"]}
    subs = {s["id"]: s for s in _raw(engine, "stg_subscriptions", site)}

    ends = month_ends(first, last)
    sub_mrr: dict[date, dict[str, float]] = {e: defaultdict(float) for e in ends}
    for li in _raw(engine, "stg_line_items", site):
        if (li.get("origin") not in opts["recurring_origins"] or not li.get("start_date") or not li.get("end_date")
                or li.get("refund") or li.get("invoice_id") in bad_invoices or li.get("add_on_id") in usage):
            continue
        plan = plans[li["plan_id"]]
        months = plan["interval_length"] if plan["interval_unit"] == "months" else \
            plan["interval_length"] / opts["days_per_month"]
        full = abs(li["unit_amount"] * li["quantity"])
        share = abs(li.get("discount") or 0) / abs(li["subtotal"]) if li.get("subtotal") else 0.0
        monthly = (-1 if li["type"] == "credit" else 1) * full * (1 - share) / months
        sub = subs[li["subscription_id"]]
        stop = _day(li["end_date"])
        for cut in (_day(sub.get("expires_at")), _day(sub.get("paused_at")) if sub["state"] == "paused" else None):
            if cut and cut < stop:
                stop = cut
        for e in ends:
            if _day(li["start_date"]) <= e < stop:
                sub_mrr[e][sub["id"]] += monthly

    out: dict[date, dict[str, float]] = {}
    for e in ends:
        accounts: dict[str, float] = defaultdict(float)
        for sid, value in sub_mrr[e].items():
            sub = subs[sid]
            if sub["currency"].upper() in rates and round(value, 2) != 0:
                accounts[sub["account"]["id"]] += round(round(value, 2) * rates[sub["currency"].upper()], 2)
        out[e] = {a: round(v, 2) for a, v in accounts.items() if round(v, 2) != 0}
    return out


def movements(mrr_by_month_end: dict[date, dict[str, float]]) -> dict[tuple[date, str], tuple[float, float, str]]:
    """(month start, account) -> (opening, closing, type), the dbt mrr-playbook way with ChartMogul's names."""
    out, previous, ever = {}, {}, set()
    for end in sorted(mrr_by_month_end):
        current = mrr_by_month_end[end]
        for account in set(previous) | set(current):
            o, c = previous.get(account, 0.0), current.get(account, 0.0)
            if o > 0 and c > 0:
                kind = "expansion" if c > o else "contraction" if c < o else "unchanged"
            elif c > 0:
                kind = "reactivation" if account in ever else "new"
            else:
                kind = "churn"
            out[(end.replace(day=1), account)] = (o, c, kind)
        ever |= {a for a, v in current.items() if v > 0}
        previous = current
    return out
