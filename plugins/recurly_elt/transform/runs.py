"""Daily series stored as runs: one row per stretch of days with the same value.

A subscription's MRR changes a few times in its life, so "MRR per subscription per day" is kept as
runs [day_from, day_to) of constant value instead of one row per day (150,000 subscriptions over
two years would be 100 million daily rows; as runs they are a few hundred thousand). The daily views
expand runs against the calendar table.

A daily series has exactly one canonical run form (maximal runs, zero days left out), so the table is
the same whether it was computed day by day or over a whole range: `coalesce` brings any set of runs
to that form, and the store (store.py) re-coalesces at the edges of every window it replaces.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

NONZERO = 0.5  # values are integers (micro-units, or exact fractions of them): below this, zero


def from_deltas(keys: pd.DataFrame, day_from: pd.Series, day_to: pd.Series, value: pd.Series) -> pd.DataFrame:
    """Sum overlapping contributions: each row adds `value` on days [day_from, day_to) to its key.

    Returns key columns + day_from, day_to, value: the canonical runs of the summed daily series.
    """
    key_cols = list(keys.columns)
    code = _key_codes(keys)
    v = value.to_numpy()
    if (code < 0).any():  # rows without a key belong to no series
        keep = code >= 0
        keys, code, v = keys[keep], code[keep], v[keep]
        day_from, day_to = day_from[keep], day_to[keep]
    ev = pd.DataFrame({"code": np.concatenate([code, code]),
                       "day": np.concatenate([day_from.to_numpy(), day_to.to_numpy()]),
                       "value": np.concatenate([v, -v])})
    ev = ev.groupby(["code", "day"], sort=True)["value"].sum().reset_index()
    grouped = ev.groupby("code", sort=False)
    ev["value"] = grouped["value"].cumsum()
    ev["day_to"] = grouped["day"].shift(-1)
    ev = ev[ev["day_to"].notna()]
    # Key values back from the codes: the first row of each key, in code order.
    key_rows = keys[~pd.Series(code).duplicated().to_numpy()].reset_index(drop=True)
    out = key_rows.take(ev["code"].to_numpy()).reset_index(drop=True)
    out["day_from"], out["day_to"], out["value"] = ev["day"].to_numpy(), ev["day_to"].to_numpy(), ev["value"].to_numpy()
    return coalesce(out, key_cols)


def _key_codes(keys: pd.DataFrame) -> np.ndarray:
    """An integer per distinct key (in order of first appearance; -1 for a missing key). Sorting and
    grouping on these instead of the id strings avoids comparing and re-hashing millions of Python
    strings."""
    return keys.groupby(list(keys.columns), sort=False, observed=True).ngroup().to_numpy()


def coalesce(runs: pd.DataFrame, key_cols: list[str], value_cols: tuple[str, ...] = ("value",)) -> pd.DataFrame:
    """Canonical form: drop zero runs, merge adjacent runs of one key with equal values."""
    value_cols = list(value_cols)
    runs = runs[(runs[value_cols[0]].abs() >= NONZERO) & (runs["day_to"] > runs["day_from"])]
    if runs.empty:
        return runs.reset_index(drop=True)
    code = _key_codes(runs[key_cols])
    order = np.lexsort((runs["day_from"].to_numpy(), code))  # stable: by key, then day
    runs, code = runs.iloc[order], code[order]
    prev = runs.shift(1)
    same_key = np.concatenate([[False], (code[1:] == code[:-1]) & (code[1:] >= 0)])
    same_value = np.logical_and.reduce(
        [((runs[c] == prev[c]).fillna(False) | (runs[c].isna() & prev[c].isna())).to_numpy(dtype=bool)
         for c in value_cols])
    contiguous = (runs["day_from"] == prev["day_to"]).to_numpy()
    group = np.cumsum(~(same_key & same_value & contiguous))
    out = runs.groupby(group, sort=False).agg(
        {**{k: "first" for k in key_cols}, "day_from": "min", "day_to": "max",
         **{c: "first" for c in value_cols},
         **{c: "first" for c in runs.columns if c not in key_cols + value_cols + ["day_from", "day_to"]}})
    return out.reset_index(drop=True)


def clip(runs: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
    """The part of the runs inside the days [start, end)."""
    out = runs[(runs["day_to"] > start) & (runs["day_from"] < end)].copy()
    out["day_from"] = out["day_from"].clip(lower=start)
    out["day_to"] = out["day_to"].clip(upper=end)
    return out


def value_at(runs: pd.DataFrame, key: str, day: pd.Timestamp, value: str = "value") -> pd.Series:
    """Each key's value on `day` (keys without a run covering it are absent: zero)."""
    hit = runs[(runs["day_from"] <= day) & (runs["day_to"] > day)]
    return hit.groupby(key, sort=False)[value].sum()
