"""Monthly MRR movements per account, with ChartMogul's semantics.

A month's MRR is the account's MRR on the month's last day (or on the last day processed, for the
month in progress). Per account and month, with opening = last month's closing:

    opening 0,  closing > 0  ->  new           (never had MRR at an earlier month end)
                                 reactivation  (had MRR at an earlier month end)
    opening > 0, closing 0   ->  churn         (the account's MRR reached zero)
    both > 0                 ->  expansion / contraction / unchanged
                                 (cancelling one of two subscriptions is a contraction)

movement = closing - opening, so for every month opening + the sum of movements = closing. Months
where the account had no MRR at either end have no row.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from recurly_elt.transform import runs

HAS_MRR = runs.NONZERO  # amounts are integer micro-units


def month_starts(first: pd.Timestamp, last: pd.Timestamp) -> pd.DatetimeIndex:
    return pd.date_range(first.to_period("M").to_timestamp(), last.to_period("M").to_timestamp(), freq="MS")


def monthly(account_runs: pd.DataFrame, months: pd.DatetimeIndex, as_of: dict[pd.Timestamp, pd.Timestamp]) -> pd.DataFrame:
    """Movement rows for `months` (month-start timestamps). `as_of[month]` is the day whose MRR closes
    that month (its last day, or the last day processed for the month in progress).

    Earlier months are evaluated too (from the account's first MRR), to tell new from reactivation.
    """
    cols = ["month", "account_id", "opening_mrr", "closing_mrr", "movement", "movement_type", "as_of"]
    if account_runs.empty or len(months) == 0:
        return pd.DataFrame(columns=cols)
    history = month_starts(min(account_runs["day_from"].min(), months[0]), months[-1])
    accounts = pd.Index(account_runs["account_id"].unique())
    closing = np.zeros((len(accounts), len(history)), dtype=np.int64)
    for j, month in enumerate(history):  # one vectorised pass per month, not per account
        day = as_of.get(month, month + pd.offsets.MonthEnd(0))
        closing[:, j] = runs.value_at(account_runs, "account_id", day, "mrr").reindex(accounts, fill_value=0).to_numpy(dtype=np.int64)
    opening = np.hstack([np.zeros((len(accounts), 1), dtype=np.int64), closing[:, :-1]])
    had_before = np.hstack([np.zeros((len(accounts), 1), bool),
                            np.maximum.accumulate(closing > HAS_MRR, axis=1)[:, :-1]])

    wanted = history.get_indexer(months)
    o, c, h = opening[:, wanted].ravel(), closing[:, wanted].ravel(), had_before[:, wanted].ravel()
    has_o, has_c = o > HAS_MRR, c > HAS_MRR
    kind = np.select(
        [~has_o & has_c & ~h, ~has_o & has_c & h, has_o & ~has_c,
         has_o & has_c & (c > o), has_o & has_c & (c < o), has_o & has_c],
        ["new", "reactivation", "churn", "expansion", "contraction", "unchanged"], default="adjustment")
    out = pd.DataFrame({
        "month": np.tile(months.to_numpy(), len(accounts)),
        "account_id": np.repeat(accounts.to_numpy(), len(months)),
        "opening_mrr": o, "closing_mrr": c, "movement": c - o, "movement_type": kind,
    })
    closing_day = pd.Series({m: as_of.get(m, m + pd.offsets.MonthEnd(0)) for m in months})
    out["as_of"] = out["month"].map(closing_day)
    return out[(np.abs(o) >= HAS_MRR) | (np.abs(c) >= HAS_MRR)].reset_index(drop=True)[cols]
