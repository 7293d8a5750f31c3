"""Read staging into DataFrames: only the columns the transform uses, one site at a time.

Read column by column into Arrow (warehouse/columnar.py), never a Python object per value: at
100,000 accounts the rows of staging are millions. Timestamps come back as naive UTC datetime64
whatever the dialect, numbers and integers as float, booleans as pandas "boolean", JSON columns
as text. The raw JSON is never read here.
"""

from __future__ import annotations

from dataclasses import dataclass

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
                      "expires_at", "expiration_reason", "created_at"),
    "invoices": ("id", "account_id", "type", "origin", "state", "currency", "subscription_ids", "total",
                 "paid", "balance", "due_at", "closed_at", "created_at"),
    "line_items": ("id", "account_id", "invoice_id", "subscription_id", "plan_id", "plan_code",
                   "add_on_id", "add_on_code", "type", "state", "origin", "currency", "unit_amount",
                   "quantity", "subtotal", "discount", "proration_rate", "refund", "start_date",
                   "end_date", "created_at"),
    "transactions": ("id", "account_id", "invoice_id", "subscription_ids", "type", "origin", "status",
                     "success", "amount", "currency", "collected_at", "created_at"),
    "plans": ("id", "code", "name", "interval_unit", "interval_length"),
    "plan_add_ons": ("id", "plan_id", "code", "add_on_type", "usage_type"),
}
SNAPSHOT_COLUMNS: dict[str, tuple[str, ...]] = {
    "subscriptions": ("state", "plan_code", "canceled_at", "paused_at", "expires_at"),
    "accounts": ("card_exp_month", "card_exp_year"),
}


@dataclass
class SiteFrames:
    """Everything one site's transform reads, as DataFrames."""

    site: str
    accounts: pd.DataFrame
    subscriptions: pd.DataFrame
    invoices: pd.DataFrame
    line_items: pd.DataFrame
    transactions: pd.DataFrame
    plans: pd.DataFrame
    plan_add_ons: pd.DataFrame
    subscription_snapshots: pd.DataFrame
    account_snapshots: pd.DataFrame

    @property
    def rows_in(self) -> int:
        return sum(len(f) for f in (self.accounts, self.subscriptions, self.invoices, self.line_items,
                                    self.transactions, self.plans, self.plan_add_ons,
                                    self.subscription_snapshots, self.account_snapshots))


def read_table(db: Columnar, table: sa.Table, columns: tuple[str, ...], site: str) -> pd.DataFrame:
    """One site's rows of a staging table, typed by the table's declared columns (columnar.py)."""
    # On SQLite, `+site` keeps the planner off the (site, id) key index: a site is most of a staging
    # table, and walking the index reads the rows in random order (minutes on a table bigger than
    # the page cache) where a plain scan reads them in storage order.
    site_col = sa.literal_column('+"site"', sa.Text) if db.is_sqlite else table.c.site
    return db.read(sa.select(*(table.c[c] for c in columns)).where(site_col == site))


def read_site(db: Columnar, site: str) -> SiteFrames:
    frames = {name: read_table(db, staging_table(name), cols, site) for name, cols in COLUMNS.items()}
    snaps = {name: read_table(db, snapshot_table(name), ("id", "observed_updated_at", *cols), site)
             for name, cols in SNAPSHOT_COLUMNS.items()}
    return SiteFrames(site=site, subscription_snapshots=snaps["subscriptions"],
                      account_snapshots=snaps["accounts"], **frames)


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


def lookup(keys: pd.Series, mapping: pd.Series) -> pd.Series:
    """`keys.map(mapping)` for id keys (a mapping with a unique index), through Arrow's hash table:
    pandas builds an index of Python objects for Arrow-backed strings. Missing keys give NA."""
    at = pc.fill_null(pc.index_in(_strings(keys), value_set=_strings(mapping.index)), -1)
    return pd.Series(mapping.array.take(at.to_numpy(zero_copy_only=False), allow_fill=True), index=keys.index,
                     name=mapping.name)


def strings(values: pa.Array | np.ndarray) -> pd.Series:
    """Text made in numpy or Arrow as a pandas "str" Series, without a Python object per value."""
    arr = values if isinstance(values, (pa.Array, pa.ChunkedArray)) else pa.array(values)
    return pd.Series(pd.array(arr.cast(pa.large_string()), dtype="str"))
