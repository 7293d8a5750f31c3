"""Plan segments and the subscription overview, as of the end of a day.

One row per subscription: plan code, name and interval ("1 month", "12 months", "7 days"), MRR on
the day (native and reporting currency), its MRR band and quantity band, tenure in whole months since
activation with its tenure band, the activation cohort (month), status and churn reason/type.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from recurly_elt.transform import bands, fx, money, runs, status
from recurly_elt.transform.config import TransformConfig
from recurly_elt.transform.frames import SiteFrames, lookup, lookup_int


def interval_label(unit: pd.Series, length: pd.Series) -> pd.Series:
    n = length.astype("Int64").astype(str)
    word = unit.str.rstrip("s")
    out = n + " " + word + np.where(length == 1, "", "s")
    return out.where(unit.notna() & length.notna(), None)


def subscription_overview(f: SiteFrames, sub_runs: pd.DataFrame, day: pd.Timestamp,
                          config: TransformConfig) -> pd.DataFrame:
    subs = f.subscriptions.drop_duplicates("id").reset_index(drop=True)
    plans = f.plans.drop_duplicates("id").set_index("id")
    mrr = runs.value_at(sub_runs, "subscription_id", day, "mrr")
    mrr_rep = runs.value_at(sub_runs[sub_runs["mrr_reporting"].notna()], "subscription_id", day, "mrr_reporting")
    t = day + pd.Timedelta(days=1)
    started = subs["activated_at"].where(subs["activated_at"] < t)
    tenure = ((t - started).dt.days // 30.4375).where(started.notna())
    codes = f.accounts.drop_duplicates("id").set_index("id")["code"]
    out = pd.DataFrame({
        "subscription_id": subs["id"], "account_id": subs["account_id"],
        "account_code": lookup(subs["account_id"], codes),
        "plan_code": subs["plan_code"], "plan_name": subs["plan_name"].fillna(lookup(subs["plan_id"], plans["name"])),
        "plan_interval": interval_label(lookup(subs["plan_id"], plans["interval_unit"]),
                                        lookup(subs["plan_id"], plans["interval_length"])),
        "status": status.subscription_status(subs, f.invoices, day).to_numpy(),
        "state": subs["state"], "currency": subs["currency"], "quantity": subs["quantity"],
        "mrr": lookup_int(subs["id"], mrr),
        # 0 without MRR on the day, NULL when the currency has no FX rate (no reporting amount at all)
        "mrr_reporting": pd.arrays.IntegerArray(lookup_int(subs["id"], mrr_rep),
                                                fx.missing_rate_reasons(subs["currency"], config).notna().to_numpy()),
        "activated_at": subs["activated_at"], "trial_ends_at": subs["trial_ends_at"],
        "current_period_ends_at": subs["current_period_ends_at"], "canceled_at": subs["canceled_at"],
        "expires_at": subs["expires_at"],
        "churn_reason": status.churn_reason(subs["expiration_reason"]).where(subs["expires_at"] < t),
        "churn_type": status.churn_type(subs["expiration_reason"]).where(subs["expires_at"] < t),
        "tenure_months": tenure,
        "cohort_month": started.dt.to_period("M").dt.to_timestamp(),
    })
    # A subscription whose currency has no FX rate has no reporting MRR, hence no MRR band.
    out["mrr_band"] = bands.label(out["mrr_reporting"].astype("Float64") / money.MICRO, config.bands["mrr"])
    out["quantity_band"] = bands.label(out["quantity"], config.bands["quantity"])
    out["tenure_band"] = bands.label(out["tenure_months"], config.bands["tenure_months"])
    out["as_of"] = day
    return out
