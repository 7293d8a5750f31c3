"""Subscription status, churn reason and churn type, as of the end of a day.

Status is read from the subscription's own dates, so it can be asked for any day the latest staged
version describes: future, in_trial, active, past_due, canceling (canceled, paid to the end of its
period), paused, expired. A subscription is past_due when an invoice billing it is open past its due
date. Churn type follows Recurly: non-payment and invalid tax location are involuntary, every other
reason is voluntary; an unknown reason is kept as data (type "unknown"), never an error.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from recurly_elt.transform.frames import isin

INVOLUNTARY = {"nonpayment", "non_payment", "tax_location_invalid"}
VOLUNTARY = {"canceled", "cancelled", "non_renewing", "fixed_billing_cycles", "nonpayment_gift", "gift_ended",
             "nonpayment_trial", "trial_ended", "account_closed", "expired"}

CHURN_REASONS = {  # raw expiration_reason -> analyst label
    "canceled": "canceled", "cancelled": "canceled", "nonpayment": "non-payment",
    "non_payment": "non-payment", "non_renewing": "fixed billing cycles",
    "fixed_billing_cycles": "fixed billing cycles", "tax_location_invalid": "tax location invalid",
    "nonpayment_gift": "gift ended", "gift_ended": "gift ended", "nonpayment_trial": "trial ended",
    "trial_ended": "trial ended", "account_closed": "account closed",
}


def open_invoices_at(invoices: pd.DataFrame, t: pd.Timestamp) -> pd.DataFrame:
    """Charge invoices open at instant t (created, not yet closed, not voided or failed by then),
    with the amount outstanding at t: the balance if still open now, the total if it was settled
    later. An invoice that failed or was voided after t (its closed_at) was still open at t."""
    ended = invoices["state"].isin(["voided", "failed"]) & ~(invoices["closed_at"] >= t)
    inv = invoices[(invoices["created_at"] < t) & (invoices["type"] != "credit") & ~ended]
    closed_later = inv["closed_at"].notna() & (inv["closed_at"] >= t)
    still_open = inv["closed_at"].isna() & ~inv["state"].isin(["paid", "closed"])
    inv = inv[closed_later | still_open].copy()
    inv["outstanding"] = inv["total"].where(closed_later[inv.index], inv["balance"].fillna(inv["total"]))
    return inv[(inv["outstanding"] > 0).fillna(False).astype(bool)]


def invoice_subscriptions(invoices: pd.DataFrame) -> pd.DataFrame:
    """(invoice id, subscription id) pairs from the invoices' subscription_ids JSON arrays."""
    ids = invoices["subscription_ids"].fillna("[]").str.findall(r'"([^"]+)"')
    pairs = pd.DataFrame({"invoice_id": invoices["id"].to_numpy(), "subscription_id": ids.to_numpy()})
    return pairs.explode("subscription_id").dropna()


def subscription_status(subs: pd.DataFrame, invoices: pd.DataFrame, day: pd.Timestamp) -> pd.Series:
    t = day + pd.Timedelta(days=1)  # the end of the day
    overdue = open_invoices_at(invoices, t)
    overdue = overdue[overdue["due_at"] < t]
    past_due_subs = set(invoice_subscriptions(overdue)["subscription_id"])
    expired = (subs["expires_at"] < t) | (subs["state"].isin(["expired", "failed"]) & subs["expires_at"].isna())
    undated = subs["activated_at"].isna() & subs["trial_started_at"].isna() & (subs["state"] != "future")
    started = (subs["activated_at"] < t) | (subs["trial_started_at"] < t) | (undated & (subs["created_at"] < t))
    future = ~started
    in_trial = (subs["trial_started_at"] < t) & (subs["trial_ends_at"] >= t)
    paused = (subs["state"] == "paused") & (subs["paused_at"] < t)
    canceling = (subs["canceled_at"] < t)
    past_due = isin(subs["id"], past_due_subs)
    status = np.select([expired, future, paused, in_trial, canceling, past_due],
                       ["expired", "future", "paused", "in_trial", "canceling", "past_due"], default="active")
    return pd.Series(status, index=subs.index)


def churn_reason(reason: pd.Series) -> pd.Series:
    return reason.map(CHURN_REASONS).fillna(reason)


def churn_type(reason: pd.Series) -> pd.Series:
    r = reason.str.lower()
    out = np.select([r.isin(INVOLUNTARY), r.isin(VOLUNTARY), r.notna()], ["involuntary", "voluntary", "unknown"],
                    default=None)
    return pd.Series(out, index=reason.index, dtype=object)
