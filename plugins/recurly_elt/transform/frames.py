"""Read staging into DataFrames: only the columns the transform uses, one site at a time.

Timestamps come back as naive UTC datetime64 whatever the dialect (SQLite hands back text,
PostgreSQL datetimes); numbers as float; JSON columns stay text. The raw JSON is never read here.
"""

from __future__ import annotations

from contextlib import closing
from dataclasses import dataclass

import pandas as pd
import sqlalchemy as sa

from recurly_elt.recurly.resources import get as get_resource
from recurly_elt.staging.tables import snapshot_table, staging_table

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


def _typed(frame: pd.DataFrame, resource_name: str) -> pd.DataFrame:
    types = {c.name: c.type for c in get_resource(resource_name).columns}
    for name in frame.columns:
        t = "timestamp" if name == "observed_updated_at" else types.get(name)
        if t == "timestamp":
            frame[name] = pd.to_datetime(frame[name], format="ISO8601", utc=True).dt.tz_localize(None)
        elif t == "number":
            frame[name] = pd.to_numeric(frame[name]).astype("float64")
        elif t == "integer":
            frame[name] = pd.to_numeric(frame[name]).astype("Float64").astype("float64")
        elif t == "boolean":
            frame[name] = frame[name].astype("boolean")
        elif frame[name].dtype == object:  # text, all NULL in this chunk: same dtype as the others
            frame[name] = frame[name].astype("str")
    return frame


READ_CHUNK_ROWS = 100_000


def read_table(conn: sa.Connection, table: sa.Table, columns: tuple[str, ...], site: str,
               resource_name: str) -> pd.DataFrame:
    """One site's rows of a staging table, typed.

    Read through the driver's own cursor, in chunks typed as they come: SQLAlchemy's row objects
    and a whole table of untyped Python values at once cost more time and memory than the
    transform itself at 100,000 accounts.
    """
    # On SQLite, `+site` keeps the planner off the (site, id) key index: a site is most of a staging
    # table, and walking the index reads the rows in random order (minutes on a table bigger than
    # the page cache) where a plain scan reads them in storage order.
    site_col = "+site" if conn.dialect.name == "sqlite" else "site"
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    names = ", ".join(f'"{c}"' for c in columns)
    chunks = []
    with closing(conn.connection.driver_connection.cursor()) as cur:
        cur.execute(f'SELECT {names} FROM "{table.name}" WHERE {site_col} = {mark}', (site,))
        while rows := cur.fetchmany(READ_CHUNK_ROWS):
            chunks.append(_typed(pd.DataFrame.from_records(rows, columns=list(columns)), resource_name))
    if not chunks:
        return _typed(pd.DataFrame({c: pd.Series(dtype=object) for c in columns}), resource_name)
    return pd.concat(chunks, ignore_index=True) if len(chunks) > 1 else chunks[0]


def read_site(conn: sa.Connection, site: str) -> SiteFrames:
    frames = {name: read_table(conn, staging_table(name), cols, site, name) for name, cols in COLUMNS.items()}
    snaps = {name: read_table(conn, snapshot_table(name), ("id", "observed_updated_at", *cols), site, name)
             for name, cols in SNAPSHOT_COLUMNS.items()}
    return SiteFrames(site=site, subscription_snapshots=snaps["subscriptions"],
                      account_snapshots=snaps["accounts"], **frames)


def staged_sites(conn: sa.Connection) -> list[str]:
    """Every site with accounts or subscriptions in staging."""
    out: set[str] = set()
    for name in ("accounts", "subscriptions"):
        out.update(conn.execute(sa.select(staging_table(name).c.site).distinct()).scalars())
    return sorted(out)
