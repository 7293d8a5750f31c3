"""Subscription and account MRR per day, reconstructed from invoiced line items.

Staging keeps only the latest version of a subscription, but Recurly keeps its billing history:
every recurring charge is a line item with a service period [start_date, end_date), the plan or
add-on it bills, its proration and its discount. That is where MRR history comes from (as in
Recurly's own MRR report):

- a recurring line item (origin plan or add_on, with a service period, on an invoice that is
  neither voided nor failed, not a refund, not a usage add-on) contributes, on every day of its
  service period, its full-period price normalised to a month:
      unit_amount x quantity x (1 - discount / subtotal)  ->  / interval_length (months)
                                                           ->  x days_per_month / interval_length (days)
  tax is never in it; one-time, setup-fee, trial and credit-origin items are left out;
- a proration credit (type credit, same origin) contributes the same with a minus sign, so an
  upgrade mid-period (credit of the old price + charge of the new one for the rest of the period)
  leaves exactly the new price from the change on;
- the subscription's own dates cut it: nothing from expires_at on (terminations, non-payment),
  nothing from paused_at on while it is paused. Trials, future subscriptions and paused periods
  have no recurring charge, so they are zero; a canceled subscription keeps its MRR to the end of
  the period it paid for, which is where its last charge ends.

A day's MRR is the MRR at the end of that day: a service period [start, end) covers the days
[date(start), date(end)).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from recurly_elt.transform import fx, runs
from recurly_elt.transform.config import TransformConfig
from recurly_elt.transform.frames import SiteFrames, isin, lookup

QUARANTINE_COLUMNS = ["stage", "object_id", "reason"]


def _quarantine(stage: str, ids: pd.Series, reasons: pd.Series | str) -> pd.DataFrame:
    return pd.DataFrame({"stage": stage, "object_id": ids.astype(str).to_numpy(),
                         "reason": reasons if isinstance(reasons, str) else reasons.to_numpy()})


def recurring_segments(f: SiteFrames, config: TransformConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Recurring line items as monthly contributions over day ranges.

    Returns (segments, quarantine). Segments: line_item_id, subscription_id, account_id, currency,
    origin, type, plan_code, quantity, gross_monthly (before discount), monthly, day_from, day_to,
    end_date (the service period's end, a timestamp).
    """
    li = f.line_items
    keep = (li["origin"].isin(config.recurring_origins) & li["start_date"].notna()
            & li["end_date"].notna() & ~li["refund"].fillna(False).astype(bool)
            & li["subscription_id"].notna() & (li["state"].fillna("invoiced") != "pending"))
    bad_invoices = f.invoices.loc[f.invoices["state"].isin(config.excluded_invoice_states), "id"]
    keep &= ~isin(li["invoice_id"], bad_invoices)
    usage = f.plan_add_ons.loc[(f.plan_add_ons["add_on_type"] == "usage") | f.plan_add_ons["usage_type"].notna(), "id"]
    keep &= ~isin(li["add_on_id"], usage)
    li = li[keep]

    # The plan's billing interval: by plan id, else by plan code (an add-on item names its plan).
    plans = f.plans.drop_duplicates("id")
    by_id = lookup(li["plan_id"], plans.set_index("id")["interval_unit"])
    length_by_id = lookup(li["plan_id"], plans.set_index("id")["interval_length"])
    by_code = plans.drop_duplicates("code").set_index("code")
    unit = by_id.fillna(lookup(li["plan_code"], by_code["interval_unit"]))
    length = length_by_id.fillna(lookup(li["plan_code"], by_code["interval_length"]))
    months = np.where(unit == "days", length / config.days_per_month, length)
    known = pd.notna(unit) & (unit.isin(["days", "months"])) & (length > 0)
    quarantine = _quarantine("mrr", li.loc[~known, "id"],
                             "line item " + li.loc[~known, "id"].astype(str) + ": plan "
                             + li.loc[~known, "plan_code"].fillna("<none>").astype(str)
                             + " not staged or without a billing interval")

    # Full-period price: unit_amount x quantity (Recurly keeps the full unit price on a prorated
    # item; its subtotal is prorated), net of the item's discount share. Credits carry negative
    # amounts in the API: work on magnitudes and put the sign back.
    rate = li["proration_rate"].where((li["proration_rate"] > 0) & (li["proration_rate"] <= 1), 1.0)
    subtotal = li["subtotal"].abs()
    gross = (li["unit_amount"] * li["quantity"].fillna(1)).abs().fillna(subtotal / rate)
    discount_share = (li["discount"].fillna(0.0).abs() / subtotal.where(subtotal > 0)).fillna(0.0).clip(0.0, 1.0)
    net = gross * (1.0 - discount_share)
    sign = np.where(li["type"] == "credit", -1.0, 1.0)
    seg = pd.DataFrame({
        "line_item_id": li["id"], "subscription_id": li["subscription_id"], "account_id": li["account_id"],
        "currency": li["currency"], "origin": li["origin"], "type": li["type"], "plan_code": li["plan_code"],
        "quantity": li["quantity"],
        "gross_monthly": sign * gross / months,
        "monthly": sign * net / months,
        "day_from": li["start_date"].dt.normalize(), "day_to": li["end_date"].dt.normalize(),
        "end_date": li["end_date"], "created_at": li["created_at"],
    })[known.to_numpy()]

    # The subscription's own end: expiry, or the start of a pause still in force.
    subs = f.subscriptions.set_index("id")
    paused_from = subs["paused_at"].where(subs["state"] == "paused")
    cut = pd.concat([subs["expires_at"], paused_from], axis=1).min(axis=1).dt.normalize()
    seg_cut = lookup(seg["subscription_id"], cut)
    seg["day_to"] = seg["day_to"].where(~(seg_cut < seg["day_to"]), seg_cut)
    seg = seg[seg["day_to"] > seg["day_from"]]
    return seg.reset_index(drop=True), quarantine


def subscription_runs(segments: pd.DataFrame, f: SiteFrames, config: TransformConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """MRR per subscription per day as runs: subscription_id, day_from, day_to, account_id,
    currency, mrr (native), mrr_reporting (NaN when the currency has no FX rate). Also returns the
    quarantine rows for missing rates."""
    r = runs.from_deltas(segments[["subscription_id"]], segments["day_from"], segments["day_to"],
                         segments["monthly"])
    subs = f.subscriptions.drop_duplicates("id").set_index("id")
    first = segments.drop_duplicates("subscription_id").set_index("subscription_id")
    r["account_id"] = lookup(r["subscription_id"], subs["account_id"]).fillna(lookup(r["subscription_id"], first["account_id"]))
    r["currency"] = lookup(r["subscription_id"], subs["currency"]).fillna(lookup(r["subscription_id"], first["currency"]))
    r = r.rename(columns={"value": "mrr"})
    r["mrr_reporting"] = fx.to_reporting(r["mrr"], r["currency"], config)
    reasons = fx.missing_rate_reasons(r["currency"], config)
    bad = r[reasons.notna()].drop_duplicates("subscription_id")
    quarantine = _quarantine("fx", bad["subscription_id"],
                             "subscription " + bad["subscription_id"].astype(str) + ": "
                             + reasons[bad.index].astype(str))
    return r[["subscription_id", "day_from", "day_to", "account_id", "currency", "mrr", "mrr_reporting"]], quarantine


def account_runs(sub_runs: pd.DataFrame) -> pd.DataFrame:
    """MRR per account per day (reporting currency) as runs: account_id, day_from, day_to, mrr.
    Subscriptions without an FX rate are left out (they are in the quarantine)."""
    ok = sub_runs[sub_runs["mrr_reporting"].notna()]
    r = runs.from_deltas(ok[["account_id"]], ok["day_from"], ok["day_to"], ok["mrr_reporting"])
    return r.rename(columns={"value": "mrr"})[["account_id", "day_from", "day_to", "mrr"]]
