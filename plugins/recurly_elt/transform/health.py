"""Account health per account and day, in the CustomerSuccessBox manner, scored the Totango way.

For each day d (as of its end, instant t = d + 1 day) and each staged account: MRR and its 30/90-day
trend, plan names and quantities, invoice money (paid, due, billed, overdue; reporting currency),
next billing date, trial end, failed payments in the last 30 days, card expiry, risk alerts, the
account status, per-dimension scores, a 0-100 score and a band from include/mappings/health.yaml
(transform/scoring.py: who is scored, missing metrics, risk caps).

Only facts known at t are used, so recomputing a past day from later staging gives the same row:
accounts created before t; each subscription's state, cancellation and pause, and each account's
card, as of their last snapshot observed before t (`as_of`); plan names and quantities from the plan
charge billing the day, not from the latest staged subscription; an invoice that failed or was
voided after t is open at t.

Invoice amounts as of a past day come from the latest staged invoice: an invoice closed after t
counts as open at t for its total; payments of an invoice still open are counted as they are now.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from recurly_elt.transform import fx, money, runs, scoring, status
from recurly_elt.transform.config import TransformConfig
from recurly_elt.transform.frames import SiteFrames, isin, lookup

DAY = pd.Timedelta(days=1)


def _invoices_reporting(f: SiteFrames, config: TransformConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Charge invoices (not voided) with total, paid and balance in the reporting currency, int64
    micro-units: each amount converted and rounded half up on its own (transform/fx.py). A missing
    balance reads as the total (the invoice's outstanding amount when nothing was paid)."""
    inv = f.invoices[(f.invoices["type"] != "credit") & (f.invoices["state"] != "voided")].copy()
    inv["balance"] = inv["balance"].fillna(inv["total"])
    for col in ("total", "paid", "balance"):
        inv[col] = fx.to_reporting(money.micros(inv[col], inv["id"], f"invoice {col}"), inv["currency"], config)
    reasons = fx.missing_rate_reasons(inv["currency"], config)
    bad = inv[reasons.notna()]
    quarantine = pd.DataFrame({"stage": "health", "object_id": bad["id"].astype(str),
                               "reason": "invoice " + bad["id"].astype(str) + ": " + reasons[bad.index]})
    inv = inv[reasons.isna()]
    for col in ("total", "paid", "balance"):
        inv[col] = inv[col].to_numpy(dtype=np.int64)
    return inv, quarantine


def _joined_plan_names(live: pd.DataFrame) -> pd.Series:
    """Per account, its distinct plan names sorted and joined with ", ". Built one rank at a time
    (an account has a few plans), not with a Python join per account."""
    p = live[["account_id", "plan_name"]].drop_duplicates().sort_values("plan_name", kind="stable")
    rank = p.groupby("account_id", sort=False).cumcount().to_numpy()
    out = p[rank == 0].set_index("account_id")["plan_name"]
    for k in range(1, int(rank.max()) + 1 if len(rank) else 0):
        nth = p[rank == k].set_index("account_id")["plan_name"]
        out = out + (", " + nth).reindex(out.index).fillna("")
    return out


def as_of(latest: pd.DataFrame, snapshots: pd.DataFrame, t: pd.Timestamp) -> pd.DataFrame:
    """The staged objects (indexed by id) with their snapshot columns as they were at instant t.

    An object takes the values of its last snapshot observed before t. One first observed after t
    (history before the first extraction) takes its earliest snapshot, the oldest version known,
    which later extractions never change; one without snapshots keeps its staged row.
    `snapshots` must be sorted by observed_updated_at.
    """
    subs = latest
    cols = [c for c in snapshots.columns if c in subs.columns and c != "id"]
    seen = snapshots[snapshots["observed_updated_at"] < t].drop_duplicates("id", keep="last")
    earliest = snapshots.drop_duplicates("id", keep="first")
    version = pd.concat([seen, earliest[~isin(earliest["id"], seen["id"])]]).set_index("id")
    known = isin(subs.index, version.index)
    out = subs.copy()
    for c in cols:
        out[c] = version[c].reindex(subs.index).where(known, subs[c])
    return out


def _plan_on_day(plan_charges: pd.DataFrame, live: pd.DataFrame, plans: pd.DataFrame, subs: pd.DataFrame,
                 d: pd.Timestamp) -> pd.DataFrame:
    """Plan name and quantity of each live subscription on day d, from the latest plan charge
    billing the day (the latest staged subscription may carry a later plan change)."""
    billing = plan_charges[(plan_charges["day_from"] <= d) & (plan_charges["day_to"] > d)]
    billing = billing.sort_values("created_at", kind="stable").drop_duplicates("subscription_id", keep="last")
    billing = billing.set_index("subscription_id")
    code = lookup(live["subscription_id"], billing["plan_code"])
    name = lookup(code, plans.drop_duplicates("code").set_index("code")["name"])
    return live.assign(plan_name=name.fillna(lookup(live["subscription_id"], subs["plan_name"])).fillna(""),
                       quantity=lookup(live["subscription_id"], billing["quantity"])
                       .fillna(lookup(live["subscription_id"], subs["quantity"])).astype("float64"))


def _per_account(values: pd.Series, accounts: pd.Index, fill=np.nan) -> np.ndarray:
    return values.reindex(accounts, fill_value=fill).to_numpy()


def _money_per_account(values: pd.Series, accounts: pd.Index) -> np.ndarray:
    """Per-account sums of micro-units (0 for an account without any), as int64."""
    return values.reindex(accounts, fill_value=0).to_numpy(dtype=np.int64)


def account_health(f: SiteFrames, sub_runs: pd.DataFrame, acct_runs: pd.DataFrame, segments: pd.DataFrame,
                   days: pd.DatetimeIndex, config: TransformConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One row per account and day of `days`. Returns (health, quarantine)."""
    accounts = f.accounts.drop_duplicates("id").set_index("id")
    idx = accounts.index
    latest_subs = f.subscriptions.drop_duplicates("id").set_index("id")
    sub_snaps = f.subscription_snapshots.sort_values("observed_updated_at", kind="stable")
    account_snaps = f.account_snapshots.sort_values("observed_updated_at", kind="stable")
    invoices, quarantine = _invoices_reporting(f, config)
    tx = f.transactions
    failed_tx = tx[tx["type"].isin(["purchase", "capture"]) & tx["status"].isin(["declined", "error"])]
    alerts_cfg = config.health["alerts"]
    rules = scoring.HealthRules.from_config(config.health)
    has_billing = (accounts["billing_info_valid"].fillna(False).astype(bool) | accounts["billing_info_id"].notna())
    first_mrr_day = acct_runs.groupby("account_id")["day_from"].min()
    expired_subs = latest_subs[latest_subs["expires_at"].notna()].sort_values("expires_at")
    plan_charges = segments[(segments["origin"] == "plan") & (segments["monthly"] > 0)]

    out = []
    for d in days:  # one vectorised pass per day
        t = d + DAY
        subs = as_of(latest_subs, sub_snaps, t)
        cards = as_of(accounts[["card_exp_month", "card_exp_year"]], account_snaps, t)
        card_expires = (pd.to_datetime(pd.DataFrame({"year": cards["card_exp_year"], "month": cards["card_exp_month"],
                                                     "day": 1}), errors="coerce") + pd.offsets.MonthEnd(0))
        renews = ~(subs["canceled_at"] < t) & subs["auto_renew"].fillna(True).astype(bool)
        mrr = _money_per_account(runs.value_at(acct_runs, "account_id", d, "mrr"), idx)
        m30 = _money_per_account(runs.value_at(acct_runs, "account_id", d - 30 * DAY, "mrr"), idx)
        m90 = _money_per_account(runs.value_at(acct_runs, "account_id", d - 90 * DAY, "mrr"), idx)
        live = sub_runs[(sub_runs["day_from"] <= d) & (sub_runs["day_to"] > d) & (sub_runs["mrr"] > 0)]
        live = _plan_on_day(plan_charges, live, f.plans, subs, d)
        names = _joined_plan_names(live)

        existing = invoices[invoices["created_at"] < t]
        open_now = status.open_invoices_at(existing, t)
        overdue = open_now[open_now["due_at"] < t]
        settled = existing[~isin(existing["id"], open_now["id"])]

        covering = plan_charges[(plan_charges["day_from"] <= d) & (plan_charges["day_to"] > d)]
        covering = covering[lookup(covering["subscription_id"], renews).fillna(False).astype(bool)]
        trials = subs[(subs["trial_started_at"] < t) & (subs["trial_ends_at"] >= t)]
        canceling = subs[(subs["canceled_at"] < t) & ~(subs["expires_at"] < t)]
        paused = subs[(subs["state"] == "paused") & (subs["paused_at"] < t)]
        churned_sub = expired_subs[expired_subs["expires_at"] < t].groupby("account_id").tail(1).set_index("account_id")
        recent_failed = failed_tx[(failed_tx["created_at"] >= t - 30 * DAY) & (failed_tx["created_at"] < t)]

        h = pd.DataFrame(index=idx)
        h["day"] = d
        h["account_code"] = accounts["code"]
        h["mrr"], h["mrr_30d_ago"], h["mrr_90d_ago"] = mrr, m30, m90
        h["mrr_trend_30d_pct"] = np.where(m30 > 0, (mrr - m30) / np.where(m30 > 0, m30, 1) * 100, np.nan).round(1)
        h["mrr_trend_90d_pct"] = np.where(m90 > 0, (mrr - m90) / np.where(m90 > 0, m90, 1) * 100, np.nan).round(1)
        h["plan_names"] = names.reindex(idx).to_numpy()
        h["plan_quantity"] = _per_account(live.groupby("account_id")["quantity"].sum(), idx, 0)
        h["active_subscriptions"] = _per_account(live.groupby("account_id").size(), idx, 0)
        # An invoice settled after t was unpaid at t (its payment came later); one still open counts
        # the partial payments it has now.
        paid_at_t = open_now["paid"].where(open_now["closed_at"].isna(), 0)
        h["total_paid"] = _money_per_account(settled.groupby("account_id")["paid"].sum()
                                             .add(paid_at_t.groupby(open_now["account_id"]).sum(), fill_value=0), idx)
        h["total_due"] = _money_per_account(open_now.groupby("account_id")["outstanding"].sum(), idx)
        h["billed_amount"] = _money_per_account(existing.groupby("account_id")["total"].sum(), idx)
        h["overdue_amount"] = _money_per_account(overdue.groupby("account_id")["outstanding"].sum(), idx)
        h["overdue_invoice_count"] = _per_account(overdue.groupby("account_id").size(), idx, 0)
        h["overdue_since"] = overdue.groupby("account_id")["due_at"].min().reindex(idx).to_numpy()
        h["next_billing_at"] = covering.groupby("account_id")["end_date"].min().reindex(idx).to_numpy()
        h["days_to_renewal"] = (h["next_billing_at"].dt.normalize() - d).dt.days
        h["trial_ends_at"] = trials.groupby("account_id")["trial_ends_at"].min().reindex(idx).to_numpy()
        h["failed_payments_30d"] = _per_account(recent_failed.groupby("account_id").size(), idx, 0)
        h["card_expires_on"] = card_expires.to_numpy()
        h["card_expiring_30d"] = ((card_expires >= d) & (card_expires < d + alerts_cfg["card_expiring_days"] * DAY)).to_numpy()
        # Billing info is not in the snapshots, its card is: where the card at t is not the latest
        # one, the billing info changed after t, and it was on file at t if a card was.
        card_changed = ~((cards["card_exp_year"] == accounts["card_exp_year"])
                         | (cards["card_exp_year"].isna() & accounts["card_exp_year"].isna()))
        h["has_billing_info"] = has_billing.where(~card_changed, cards["card_exp_year"].notna()).to_numpy()
        h["cancellation_scheduled"] = isin(idx, canceling["account_id"])
        h["churn_reason"] = status.churn_reason(churned_sub["expiration_reason"]).reindex(idx).to_numpy()
        h["churn_type"] = status.churn_type(churned_sub["expiration_reason"]).reindex(idx).to_numpy()

        had_mrr = _per_account(first_mrr_day, idx, pd.NaT) <= d
        h["account_status"] = np.select(
            [(mrr > 0) & (h["overdue_invoice_count"] > 0), (mrr > 0) & h["cancellation_scheduled"]
             & h["next_billing_at"].isna(), mrr > 0, isin(idx, trials["account_id"]), isin(idx, paused["account_id"]),
             had_mrr, isin(idx, subs.loc[subs["created_at"] < t, "account_id"])],
            ["past_due", "canceling", "active", "trialing", "paused", "churned", "inactive"],
            default="never_subscribed")
        h.loc[h["account_status"] != "churned", ["churn_reason", "churn_type"]] = None

        h["alert_past_due_invoice"] = h["overdue_invoice_count"] > 0
        h["alert_failed_payment"] = h["failed_payments_30d"] > 0
        h["alert_cancellation_scheduled"] = h["cancellation_scheduled"]
        h["alert_contraction"] = h["mrr_trend_30d_pct"] < -float(alerts_cfg["contraction_pct"])
        h["alert_trial_ending_without_billing_info"] = (
            (h["trial_ends_at"] < t + alerts_cfg["trial_ending_days"] * DAY) & ~h["has_billing_info"])
        h["alert_card_expiring"] = h["card_expiring_30d"]
        # The next renewal is charged on next_billing_at's day; the card is valid through its expiry day.
        h["alert_card_expires_before_renewal"] = (h["card_expires_on"] < h["next_billing_at"].dt.normalize()).fillna(False)
        alert_cols = [c for c in h.columns if c.startswith("alert_")]
        h["alert_count"] = h[alert_cols].sum(axis=1)
        # Thresholds of health.yaml are in currency units; grading reads the amounts in them.
        scored = scoring.score(h.assign(overdue_amount=h["overdue_amount"] / money.MICRO), rules)
        for col in scored.columns:
            h[col] = scored[col]
        # Only the accounts that existed at t: an account created later has no row for the day.
        out.append(h[~(accounts["created_at"] >= t)].rename_axis("account_id").reset_index())
    health = pd.concat(out, ignore_index=True) if out else pd.DataFrame()
    return health, quarantine.drop_duplicates("object_id")
