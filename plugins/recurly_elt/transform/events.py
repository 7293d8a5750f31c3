"""Lifecycle events: the 12 events of Recurly's Braze integration, derived from staging.

Each event has a deterministic id (a 128-bit hash of site, event name, object id and the time it
happened), so producing a window day by day or in one run gives the same rows, and a destination
can use the id to never send an event twice. Where each event comes from:

  Recurly New Subscription         subscription created_at
  Recurly Renewed Subscription     charge invoice with origin renewal (created_at)
  Recurly Updated Subscription     a plan charge whose plan, quantity or price differs from the
                                   subscription's previous plan charge (line item created_at)
  Recurly Canceled Subscription    every canceled_at seen (staging and snapshots)
  Recurly Reactivated Subscription snapshot change canceled -> active (observed_updated_at)
  Recurly Paused Subscription      every paused_at seen (staging and snapshots)
  Recurly Resumed Subscription     snapshot change paused -> active (observed_updated_at)
  Recurly Subscription Expired     expires_at of an expired subscription (staging and snapshots)
  Recurly Invoice Created          charge invoice created_at
  Recurly Successful Payment       successful purchase/capture transaction (collected_at)
  Recurly Refund Issued            successful refund transaction (collected_at)
  Recurly Failed Recurring Payment declined/failed purchase of a renewal (origin recurring, or on a
                                   renewal invoice) (created_at)

Reactivations and resumes leave no trace in the latest version of a subscription: they are seen in
the snapshot tables, so from the first extraction on.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from recurly_elt.transform import money
from recurly_elt.transform.frames import SiteFrames, isin, lookup, positions, strings

EVENT_NAMES = (
    "Recurly New Subscription", "Recurly Renewed Subscription", "Recurly Updated Subscription",
    "Recurly Canceled Subscription", "Recurly Reactivated Subscription", "Recurly Paused Subscription",
    "Recurly Resumed Subscription", "Recurly Subscription Expired", "Recurly Invoice Created",
    "Recurly Successful Payment", "Recurly Refund Issued", "Recurly Failed Recurring Payment",
)
COLUMNS = ["event_id", "event_name", "occurred_at", "account_id", "account_code", "subscription_id",
           "invoice_id", "transaction_id", "object_id", "plan_code", "amount", "currency", "detail"]


def _nulls(n: int, dtype: str) -> pd.api.extensions.ExtensionArray | np.ndarray:
    return np.full(n, np.nan) if dtype == "float64" else pd.array(pa.nulls(n, pa.large_string()), dtype="str")


Window = tuple[pd.Timestamp, pd.Timestamp]  # [start, end): the events a run produces


def _frame(name: str, src: pd.DataFrame, occurred_at: str, object_id: str, window: Window,
           **cols: str | None) -> pd.DataFrame:
    """The events `name` of the rows of `src` whose `occurred_at` lies in the window, in the
    columns every event has (a day's run keeps a day's rows before building anything)."""
    at = pd.to_datetime(src[occurred_at])
    inside = ((at >= window[0]) & (at < window[1])).to_numpy()
    src, at = src[inside], at[inside]
    # Columns are moved as pandas arrays (.array): to_numpy() would make a Python object of every id.
    # A column an event has no value for is typed all the same (text or float): one untyped part
    # would make the concatenated column one Python object per value for every event.
    out = pd.DataFrame({
        "event_name": pd.Categorical.from_codes(np.full(len(src), EVENT_NAMES.index(name), dtype=np.int8),
                                                categories=EVENT_NAMES),
        "occurred_at": at.array, "object_id": src[object_id].array})
    for col in ("account_id", "subscription_id", "invoice_id", "transaction_id", "plan_code", "amount",
                "currency", "detail"):
        source = cols.get(col, col if col in src.columns else None)
        if col == "amount":  # money: int64 micro-units (transform/money.py), NULL where none
            out[col] = _micro_amounts(src[source]) if source else pd.arrays.IntegerArray(
                np.zeros(len(src), dtype=np.int64), np.ones(len(src), dtype=bool))
        else:
            out[col] = src[source].astype("str").array if source else _nulls(len(src), "str")
    return out


def _micro_amounts(values: pd.Series) -> pd.arrays.IntegerArray:
    """Amounts as nullable int64 micro-units: staged and computed amounts are micro-units already."""
    nulls = values.isna().to_numpy()
    micro = money.micros(values, what="event amount")
    return pd.arrays.IntegerArray(micro, nulls)


def _subscription_events(f: SiteFrames, window: Window) -> list[pd.DataFrame]:
    subs = f.subscriptions.rename(columns={"id": "subscription_id"})
    subs["detail"] = _nulls(len(subs), "str")
    snaps = f.subscription_snapshots.rename(columns={"id": "subscription_id"})
    snaps = snaps.merge(subs[["subscription_id", "account_id", "currency"]], on="subscription_id", how="left")
    seen = pd.concat([subs, snaps], ignore_index=True)  # every version of a subscription we know of

    def distinct(col: str, mask: pd.Series | None = None) -> pd.DataFrame:
        rows = seen if mask is None else seen[mask]
        return rows[rows[col].notna()].drop_duplicates(["subscription_id", col])

    # Sorted and grouped on integer codes of the ids: sorting millions of id strings compares
    # Python objects, and only the order within one subscription matters.
    snaps["sub_code"] = pd.factorize(snaps["subscription_id"])[0]
    snaps = snaps.sort_values(["sub_code", "observed_updated_at"], kind="stable")
    prev_state = snaps.groupby("sub_code", sort=False)["state"].shift(1)
    reactivated = snaps[(prev_state == "canceled") & (snaps["state"] == "active")]
    resumed = snaps[(prev_state == "paused") & (snaps["state"] == "active")]
    expired = distinct("expires_at", seen["state"].isin(["expired", "failed"]))
    expired = expired.assign(detail=expired["expiration_reason"] if "expiration_reason" in expired else None)
    return [
        _frame("Recurly New Subscription", subs, "created_at", "subscription_id", window),
        _frame("Recurly Canceled Subscription", distinct("canceled_at"), "canceled_at", "subscription_id", window),
        _frame("Recurly Reactivated Subscription", reactivated, "observed_updated_at", "subscription_id", window),
        _frame("Recurly Paused Subscription", distinct("paused_at"), "paused_at", "subscription_id", window),
        _frame("Recurly Resumed Subscription", resumed, "observed_updated_at", "subscription_id", window),
        _frame("Recurly Subscription Expired", expired, "expires_at", "subscription_id", window),
    ]


def _plan_changes(segments: pd.DataFrame) -> pd.DataFrame:
    """Plan charges whose plan, quantity or full price differs from the subscription's previous one."""
    charges = segments[(segments["origin"] == "plan") & (segments["type"] != "credit")]
    # Integer codes of the ids to sort and group on (see _subscription_events).
    charges = charges.assign(sub_code=pd.factorize(charges["subscription_id"])[0])
    charges = charges.sort_values(["sub_code", "day_from", "created_at"], kind="stable")
    g = charges.groupby("sub_code", sort=False)
    prev_plan, prev_qty, prev_price = g["plan_code"].shift(1), g["quantity"].shift(1), g["gross_monthly"].shift(1)
    changed = prev_plan.notna() & ((charges["plan_code"] != prev_plan) | (charges["quantity"] != prev_qty)
                                   | (charges["gross_monthly"] != prev_price))
    out = charges[changed].copy()
    out["detail"] = prev_plan[changed] + " -> " + out["plan_code"]
    out["amount"] = out["gross_monthly"]
    return out


def _first_subscription(subscription_ids: pd.Series) -> pd.Series:
    """The first id of each JSON array of subscription ids, parsed once per distinct array (a
    subscription's invoices and payments repeat the same array)."""
    codes, uniques = pd.factorize(subscription_ids)
    first = pd.Series(uniques, dtype=object).str.extract(r'"([^"]+)"', expand=False).to_numpy(dtype=object)
    return pd.Series(np.where(codes >= 0, first[codes] if len(first) else None, None),
                     index=subscription_ids.index, dtype=object).astype("str")


def _invoice_events(f: SiteFrames, window: Window) -> list[pd.DataFrame]:
    inv = f.invoices[f.invoices["type"] != "credit"].rename(columns={"id": "invoice_id", "total": "amount"})
    inv["subscription_id"] = _first_subscription(inv["subscription_ids"])
    inv["detail"] = inv["origin"]
    renewals = inv[inv["origin"] == "renewal"]
    return [_frame("Recurly Invoice Created", inv, "created_at", "invoice_id", window),
            _frame("Recurly Renewed Subscription", renewals, "created_at", "invoice_id", window)]


def _transaction_events(f: SiteFrames, window: Window) -> list[pd.DataFrame]:
    tx = f.transactions.rename(columns={"id": "transaction_id"})
    tx["subscription_id"] = _first_subscription(tx["subscription_ids"])
    tx["when"] = tx["collected_at"].fillna(tx["created_at"])
    tx["detail"] = tx["status"]
    ok = tx["success"].fillna(False).astype(bool) | (tx["status"] == "success")
    payment = tx["type"].isin(["purchase", "capture"])
    renewal_invoices = f.invoices.loc[f.invoices["origin"] == "renewal", "id"]
    recurring = (tx["origin"] == "recurring") | isin(tx["invoice_id"], renewal_invoices)
    failed = payment & ~ok & tx["status"].isin(["declined", "error"]) & recurring
    return [
        _frame("Recurly Successful Payment", tx[payment & ok], "when", "transaction_id", window),
        _frame("Recurly Refund Issued", tx[(tx["type"] == "refund") & ok], "when", "transaction_id", window),
        _frame("Recurly Failed Recurring Payment", tx[failed], "created_at", "transaction_id", window),
    ]


def _event_hashes(site: str, events: pd.DataFrame) -> list[np.ndarray]:
    """Two independent 64-bit hashes of (site, event name, object id, occurred_at) per row."""
    # The object ids as an object column, made once: hashing Arrow-backed text converts it to
    # Python objects again for each of the two hashes. Site and event name are categoricals, which
    # hash their few distinct values and take (pandas documents the same hashes as for the values).
    n = len(events)
    key = pd.DataFrame({"site": pd.Categorical.from_codes(np.zeros(n, dtype=np.int8), categories=[site]),
                        "name": events["event_name"].astype("category").array,
                        "object": events["object_id"].astype(str).to_numpy(dtype=object),
                        "at": events["occurred_at"].astype("datetime64[us]").astype("int64").to_numpy()})
    # categorize=False: the same hashes, without first factorizing columns of mostly distinct values.
    return [pd.util.hash_pandas_object(key, index=False, hash_key=k, categorize=False).to_numpy()
            for k in ("recurly-elt.ev.a", "recurly-elt.ev.b")]


def _first_of_each(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """True for the first row of each distinct pair (a, b), in row order. One hash table pass on
    `a` finds the few rows that can repeat; only those are compared on both halves (a pair index
    over every row would sort millions of keys)."""
    first = np.ones(len(a), dtype=bool)
    maybe = np.flatnonzero(pd.Series(a).duplicated(keep=False).to_numpy())
    if len(maybe):
        first[maybe] = ~pd.DataFrame({"a": a[maybe], "b": b[maybe]}).duplicated().to_numpy()
    return first


def _hex_ids(halves: list[np.ndarray], index: pd.Index) -> pd.Series:
    joined = np.column_stack([h.astype(">u8") for h in halves]).tobytes().hex().encode("ascii")
    return strings(np.frombuffer(joined, dtype="S32")).set_axis(index)


def event_ids(site: str, events: pd.DataFrame) -> pd.Series:
    """hash(site, event name, object id, occurred_at) as 32 hex characters, vectorised."""
    return _hex_ids(_event_hashes(site, events), events.index)


def _plans_at(f: SiteFrames, events: pd.DataFrame) -> pd.Series:
    """The plan code of each event's subscription when the event happened: from its last snapshot
    observed at or before then (before its first snapshot: the earliest one), else the latest
    staged subscription. Never the latest version alone: a later plan change must not rewrite
    the plan of past events."""
    snaps = f.subscription_snapshots[["id", "observed_updated_at", "plan_code"]]
    snaps = snaps[snaps["observed_updated_at"].notna() & snaps["plan_code"].notna()]
    snaps = snaps.sort_values("observed_updated_at", kind="stable").reset_index(drop=True)
    # Subscriptions are matched as integer codes (their position among the snapshotted ids), and
    # each event gets the row of the plan it had; the plan strings are taken once, at the end.
    earliest = np.flatnonzero(~snaps["id"].duplicated().to_numpy())  # each id's first snapshot row
    ids = snaps["id"].iloc[earliest]
    code = positions(events["subscription_id"], ids)
    q = pd.DataFrame({"code": code, "at": events["occurred_at"].astype("datetime64[ns]").to_numpy(),
                      "row": np.arange(len(events))}).sort_values("at", kind="stable")
    r = pd.DataFrame({"code": positions(snaps["id"], ids), "snap": np.arange(len(snaps)),
                      "at": snaps["observed_updated_at"].astype("datetime64[ns]").to_numpy()})
    hit = pd.merge_asof(q, r, on="at", by="code", direction="backward")
    row = np.full(len(events), -1, dtype=np.int64)
    row[hit["row"].to_numpy()] = hit["snap"].fillna(-1).to_numpy(dtype=np.int64)
    before_first = (row < 0) & (code >= 0)
    row[before_first] = earliest[code[before_first]]
    # No snapshot at all: the latest staged version, whose plans follow the snapshots' in `plans`.
    latest = f.subscriptions.drop_duplicates("id")
    none = np.flatnonzero(row < 0)
    at_latest = positions(events["subscription_id"].iloc[none], latest["id"])
    row[none] = np.where(at_latest >= 0, len(snaps) + at_latest, -1)
    plans = pd.concat([snaps["plan_code"], latest["plan_code"]], ignore_index=True).astype("str")
    return pd.Series(plans.array.take(row, allow_fill=True), index=events.index)


def lifecycle_events(f: SiteFrames, segments: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
    """Every event that happened in [start, end) (timestamps, UTC)."""
    window = (start, end)
    parts = _subscription_events(f, window) + _invoice_events(f, window) + _transaction_events(f, window)
    parts.append(_frame("Recurly Updated Subscription", _plan_changes(segments), "created_at", "line_item_id", window))
    parts = [p for p in parts if not p.empty]
    if not parts:  # nothing happened in the window
        return pd.DataFrame(columns=COLUMNS)
    events = pd.concat(parts, ignore_index=True)
    del parts
    # The same event seen twice (e.g. a canceled_at in staging and in a snapshot) has one id: keep
    # one. Duplicates are found on the two numeric hashes, before making millions of id strings.
    halves = _event_hashes(f.site, events)
    first = _first_of_each(*halves)
    events = events[first]
    events["event_id"] = _hex_ids([h[first] for h in halves], events.index)
    # Plan code: an update names the plan it charged; every other event the subscription's plan
    # when it happened (not the latest staged plan: a later change must not rewrite past events).
    plan_at = _plans_at(f, events)
    own = (events["event_name"] == "Recurly Updated Subscription").to_numpy() | plan_at.isna().to_numpy()
    events["plan_code"] = events["plan_code"].where(own, plan_at)
    accounts = f.accounts.drop_duplicates("id").set_index("id")["code"]
    events["account_code"] = lookup(events["account_id"], accounts)
    return events[COLUMNS].reset_index(drop=True)
