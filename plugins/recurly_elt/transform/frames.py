"""Read staging into DataFrames: only the columns the transform uses, one site at a time.

Read column by column into Arrow (warehouse/columnar.py), never a Python object per value: at
100,000 accounts the rows of staging are millions. Blank text ("", as Recurly sends an unset text
field) reads as missing, like null. Timestamps come back as naive UTC datetime64
whatever the dialect, numbers and integers as float, booleans as pandas "boolean", JSON columns
as text. The raw JSON is never read here.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa

from recurly_elt.staging.tables import snapshot_table, staging_table
from recurly_elt.warehouse.columnar import Columnar

# What each stage reads, per resource (snapshot tables: their key and observed_updated_at are added).
COLUMNS: dict[str, tuple[str, ...]] = {
    "accounts": ("id", "code", "state", "billing_info_id", "billing_info_valid", "card_exp_month",
                 "card_exp_year", "created_at"),
    "subscriptions": ("id", "account_id", "plan_id", "plan_code", "plan_name", "state", "currency",
                      "unit_amount", "quantity", "auto_renew", "current_period_ends_at",
                      "trial_started_at", "trial_ends_at", "activated_at", "paused_at", "canceled_at",
                      "expires_at", "expiration_reason", "coupon_redemptions", "created_at"),
    "invoices": ("id", "account_id", "type", "origin", "state", "currency", "subscription_ids", "total",
                 "paid", "balance", "due_at", "closed_at", "coupon_redemptions", "created_at"),
    "line_items": ("id", "account_id", "invoice_id", "subscription_id", "plan_id", "plan_code",
                   "add_on_id", "add_on_code", "type", "state", "origin", "currency", "unit_amount",
                   "unit_amount_decimal", "quantity", "quantity_decimal", "subtotal", "discount", "tax",
                   "tax_inclusive", "tax_rate", "proration_rate", "refund", "start_date", "end_date",
                   "created_at"),
    "transactions": ("id", "account_id", "invoice_id", "subscription_ids", "type", "origin", "status",
                     "success", "amount", "currency", "collected_at", "created_at"),
    "plans": ("id", "code", "name", "interval_unit", "interval_length"),
    "plan_add_ons": ("id", "plan_id", "code", "add_on_type", "usage_type"),
}
SNAPSHOT_COLUMNS: dict[str, tuple[str, ...]] = {
    "subscriptions": ("state", "plan_code", "canceled_at", "paused_at", "expires_at"),
    "accounts": ("card_exp_month", "card_exp_year"),
}


# The order tables are asked for: what MRR needs first, so it can start while the rest arrives.
READ_ORDER = ("line_items", "invoices", "plans", "plan_add_ons", "subscriptions", "accounts",
              "subscription_snapshots", "account_snapshots", "transactions")
MRR_INPUTS = READ_ORDER[:5]


class SiteFrames:
    """Everything one site's transform reads, as DataFrames, each one read on first use.

    `read_site` sends every read at once; on SQLite the worker reads them in READ_ORDER while
    the stages run, and an attribute waits for its table only when a stage first needs it.
    `release` drops a frame no later stage needs (its row count stays in `rows_in`).
    """

    def __init__(self, site: str, tables: dict[str, Callable[[], pd.DataFrame] | pd.DataFrame]):
        self.site = site
        self._pending = {n: t for n, t in tables.items() if callable(t)}
        self._frames = {n: t for n, t in tables.items() if not callable(t)}
        self._rows = {n: len(t) for n, t in self._frames.items()}

    def _get(self, name: str) -> pd.DataFrame:
        if name not in self._frames:
            if name not in self._pending:
                raise AttributeError(f"{name}: released (no later stage may use it)")
            self._frames[name] = blanks_as_missing(self._pending.pop(name)())
            self._rows[name] = len(self._frames[name])
        return self._frames[name]

    def load(self, *names: str) -> None:
        """Wait for these tables now."""
        for name in names:
            self._get(name)

    def release(self, name: str) -> None:
        self._get(name)
        del self._frames[name]

    @property
    def rows_in(self) -> int:
        self.load(*self._pending)
        return sum(self._rows.values())

    accounts = property(lambda self: self._get("accounts"))
    subscriptions = property(lambda self: self._get("subscriptions"))
    invoices = property(lambda self: self._get("invoices"))
    line_items = property(lambda self: self._get("line_items"))
    transactions = property(lambda self: self._get("transactions"))
    plans = property(lambda self: self._get("plans"))
    plan_add_ons = property(lambda self: self._get("plan_add_ons"))
    subscription_snapshots = property(lambda self: self._get("subscription_snapshots"))
    account_snapshots = property(lambda self: self._get("account_snapshots"))


def blanks_as_missing(frame: pd.DataFrame) -> pd.DataFrame:
    """Recurly sends blank text as "": staging keeps it as sent, every reader takes it as missing.
    Each text column's "" becomes NA (in Arrow, without a Python object per value)."""
    for col in frame.columns:
        s = frame[col]
        if s.dtype == "str":
            arr = pa.array(s.array)
            blank = pc.equal(arr, "")
            if pc.any(blank).as_py():
                frame[col] = pd.Series(pd.array(pc.if_else(blank, pa.scalar(None, arr.type), arr), dtype="str"),
                                       index=frame.index)
    return frame


def _query(db: Columnar, table: sa.Table, columns: tuple[str, ...], site: str) -> sa.Select:
    """One site's rows of a staging table (typed by the table's declared columns: columnar.py)."""
    # On SQLite, `+site` keeps the planner off the (site, id) key index: a site is most of a staging
    # table, and walking the index reads the rows in random order (minutes on a table bigger than
    # the page cache) where a plain scan reads them in storage order.
    site_col = sa.literal_column('+"site"', sa.Text) if db.is_sqlite else table.c.site
    return sa.select(*(table.c[c] for c in columns)).where(site_col == site)


# With a second reader (SQLite), the tables it reads: about half the bytes, and one of the two
# biggest tables MRR needs first.
SECOND_READER = {"line_items", "subscriptions", "transactions", "account_snapshots"}


def read_site(db: Columnar, site: str, second_reader: bool = False) -> SiteFrames:
    """Send the reads of every table of the site and return at once (inside the caller's
    transaction; split over two connections with `second_reader`)."""
    queries = {name: _query(db, staging_table(name), cols, site) for name, cols in COLUMNS.items()}
    for name, cols in SNAPSHOT_COLUMNS.items():
        queries[f"{name[:-1]}_snapshots"] = _query(db, snapshot_table(name), ("id", "observed_updated_at", *cols), site)
    return SiteFrames(site, {name: db.read_later(queries[name], lane=int(second_reader and name in SECOND_READER))
                             for name in READ_ORDER})


def staged_sites(conn: sa.Connection) -> list[str]:
    """Every site with accounts or subscriptions in staging."""
    out: set[str] = set()
    for name in ("accounts", "subscriptions"):
        out.update(conn.execute(sa.select(staging_table(name).c.site).distinct()).scalars())
    return sorted(out)


def _strings(values) -> pa.Array:
    s = values if isinstance(values, (pd.Series, pd.Index)) else pd.Series(list(values), dtype="str")
    return pa.array(s if s.dtype == "str" else s.astype("str"))


def isin(values, candidates) -> np.ndarray:
    """`values.isin(candidates)` for ids, as a boolean array, through Arrow's hash set: pandas'
    isin on Arrow-backed strings walks the candidates in Python (seconds for 300,000 ids)."""
    return pc.is_in(_strings(values), value_set=_strings(candidates)).to_numpy(zero_copy_only=False)


def positions(keys, ids) -> np.ndarray:
    """The position of each key among `ids` (unique), -1 where it is not there, through Arrow's
    hash table: pandas builds an index of Python objects for Arrow-backed strings."""
    at = pc.fill_null(pc.index_in(_strings(keys), value_set=_strings(ids)), -1)
    return at.to_numpy(zero_copy_only=False).astype(np.int64)


def lookup(keys: pd.Series, mapping: pd.Series) -> pd.Series:
    """`keys.map(mapping)` for id keys (a mapping with a unique index). Missing keys give NA."""
    return pd.Series(mapping.array.take(positions(keys, mapping.index), allow_fill=True), index=keys.index,
                     name=mapping.name)


def lookup_int(keys: pd.Series, mapping: pd.Series, fill: int = 0) -> np.ndarray:
    """`lookup` for integer values (micro-units) as int64, `fill` for missing keys: no trip through
    float, whatever the magnitude."""
    at = positions(keys, mapping.index)
    values = mapping.to_numpy(dtype=np.int64)
    return np.where(at >= 0, values[np.maximum(at, 0)] if len(values) else fill, fill)


def strings(values: pa.Array | np.ndarray) -> pd.Series:
    """Text made in numpy or Arrow as a pandas "str" Series, without a Python object per value."""
    arr = values if isinstance(values, (pa.Array, pa.ChunkedArray)) else pa.array(values)
    return pd.Series(pd.array(arr.cast(pa.large_string()), dtype="str"))
