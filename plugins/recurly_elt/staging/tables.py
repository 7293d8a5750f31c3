"""Staging tables, built from the resource declarations.

For each resource: `stg_<name>` holds the latest version of every record, keyed by (site, id),
with typed columns plus the whole raw JSON (and the indexes the resource declares, each after the
site); `snap_<name>` is append-only and holds one row per
observed change of the resource's snapshot columns (see recurly/resources.py). Rows are made
by rows.py.

Load-time metadata columns start with an underscore (`_loaded_at`, `_run_id`) so that business
checksums can leave them aside.
"""

from __future__ import annotations

import threading
from datetime import datetime, timezone
from functools import lru_cache
from typing import Any

import sqlalchemy as sa

from recurly_elt.recurly.resources import RESOURCES, Column
from recurly_elt.warehouse.types import Money

METADATA = sa.MetaData()

_SA_TYPES = {
    "string": lambda: sa.Text(),
    "integer": lambda: sa.BigInteger(),
    # An amount, exact on both warehouses (warehouse/types.py says how each stores it).
    "money": lambda: Money(),
    # A rate or another measure that is not an amount: a decimal column read back as float.
    "number": lambda: sa.Numeric(20, 6, asdecimal=False),
    "boolean": lambda: sa.Boolean(),
    "timestamp": lambda: sa.DateTime(timezone=False),  # always UTC, stored naive
    "json": lambda: sa.Text(),
}


def _column(col: Column, primary_key: bool = False) -> sa.Column:
    return sa.Column(col.name, _SA_TYPES[col.type](), primary_key=primary_key, nullable=not primary_key)


# Table objects are built on first use, once: readers in threads of one process (the extraction
# tests, a prefetching reader) may ask for the same table at the same moment.
_BUILD = threading.RLock()


def _once(build):
    cached = lru_cache(maxsize=None)(build)

    def table(resource_name: str) -> sa.Table:
        with _BUILD:
            return cached(resource_name)

    table.__doc__, table.__name__ = build.__doc__, build.__name__
    return table


@_once
def staging_table(resource_name: str) -> sa.Table:
    res = RESOURCES[resource_name]
    cols = [sa.Column("site", sa.Text(), primary_key=True, nullable=False)]
    for col in res.columns:
        cols.append(_column(col, primary_key=col.name == res.primary_key))
    cols += [
        sa.Column("raw_json", sa.Text(), nullable=False),
        sa.Column("_loaded_at", sa.DateTime(), nullable=False),
        sa.Column("_run_id", sa.Text()),
    ]
    indexes = [sa.Index(f"ix_{res.table}_{'_'.join(names)}", "site", *names) for names in res.indexes]
    return sa.Table(res.table, METADATA, *cols, *indexes)


@_once
def snapshot_table(resource_name: str) -> sa.Table:
    res = RESOURCES[resource_name]
    cols = [
        sa.Column("site", sa.Text(), primary_key=True, nullable=False),
        sa.Column(res.primary_key, sa.Text(), primary_key=True, nullable=False),
        # the record's updated_at when the change was observed: a change has one key
        sa.Column("observed_updated_at", sa.DateTime(), primary_key=True, nullable=False),
        *(_column(c) for c in res.snapshot_columns if c.name != res.primary_key),
        sa.Column("_loaded_at", sa.DateTime(), nullable=False),
        sa.Column("_run_id", sa.Text()),
    ]
    return sa.Table(res.snapshot_table, METADATA, *cols)


def all_tables() -> list[sa.Table]:
    out = []
    for name in RESOURCES:
        out += [staging_table(name), snapshot_table(name)]
    return out


def create_staging_tables(engine: sa.Engine) -> None:
    METADATA.create_all(engine, tables=all_tables())


def parse_timestamp(value: Any) -> datetime | None:
    """ISO-8601 (with Z or an offset) to a naive UTC datetime."""
    if value in (None, ""):
        return None
    if isinstance(value, datetime):
        dt = value
    else:
        text = str(value)
        if text.endswith("Z"):  # the API's own form: already UTC, the fast path
            return datetime.fromisoformat(text[:-1])
        dt = datetime.fromisoformat(text)
    if dt.tzinfo is not None:
        dt = dt.astimezone(timezone.utc).replace(tzinfo=None)
    return dt
