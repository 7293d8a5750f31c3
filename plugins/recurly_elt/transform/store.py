"""Writing the transform's tables: bulk inserts and window replacement, on SQLite and PostgreSQL.

Every write replaces exactly the rows of one site and one date range (delete, then insert), inside
the caller's transaction, so a rerun of any window leaves the tables as one clean run would. Bulk
inserts go through the driver (executemany on SQLite, COPY on PostgreSQL), never row by row
through the ORM.
"""

from __future__ import annotations

from contextlib import closing
from datetime import datetime, timezone

import numpy as np
import pandas as pd
import sqlalchemy as sa

from recurly_elt.transform import runs as run_ops
from recurly_elt.transform import tables as t


def _values(s: pd.Series, col: sa.Column) -> np.ndarray:
    """One column as an object array of the plain Python values the driver stores as SQLAlchemy
    would (dates as ISO text, missing values as None). Each branch converts the whole column in
    numpy: at millions of rows the per-value work is a large part of the write."""
    typ = col.type
    if isinstance(typ, (sa.DateTime, sa.Date)):
        arr = pd.to_datetime(s).to_numpy(dtype="datetime64[us]")
        if isinstance(typ, sa.DateTime):
            text = np.datetime_as_string(arr)  # 'YYYY-MM-DDTHH:MM:SS.ffffff'
            # SQLAlchemy's SQLite format has a space for the 'T': set that one character in place.
            if text.dtype.itemsize > 10 * 4:  # (not an all-NaT column)
                text.view(np.uint32).reshape(len(text), -1)[:, 10] = ord(" ")
            out = text.astype(object)
        else:
            out = np.datetime_as_string(arr.astype("datetime64[D]")).astype(object)
        missing = np.isnat(arr)
    elif isinstance(typ, (sa.BigInteger, sa.Integer, sa.Numeric, sa.Float)):
        arr = pd.to_numeric(s).to_numpy(dtype="float64", na_value=np.nan)
        missing = np.isnan(arr)
        if isinstance(typ, (sa.BigInteger, sa.Integer)):
            out = np.where(missing, 0.0, np.round(arr)).astype(np.int64).astype(object)
        else:
            out = arr.astype(object)
    else:
        if isinstance(typ, sa.Boolean):
            s = s.astype("boolean")
        return s.to_numpy(dtype=object, na_value=None)
    out[missing] = None
    return out


def _key_order(frame: pd.DataFrame, key: list[str]) -> np.ndarray:
    """Row order sorted on the key columns, computed on numpy arrays (fixed-width text, int64
    times): pandas sorting of millions of distinct strings compares Python objects and took
    longer than the insert itself."""
    arrays = []
    for name in reversed(key):  # np.lexsort sorts on the last array first
        s = frame[name]
        if pd.api.types.is_datetime64_any_dtype(s):
            arrays.append(s.to_numpy(dtype="datetime64[us]").view("int64"))
        elif pd.api.types.is_numeric_dtype(s):
            arrays.append(s.to_numpy(dtype="float64", na_value=np.nan))
        else:
            arrays.append(s.astype(str).to_numpy(dtype=object).astype(str))
    return np.lexsort(arrays)


def insert_frame(conn: sa.Connection, table: sa.Table, frame: pd.DataFrame) -> int:
    """Bulk-insert the frame's rows (columns named as the table's; missing ones are NULL)."""
    if frame.empty:
        return 0
    # Rows in key order append to the B-tree instead of scattering over it (much faster on SQLite).
    # Every write holds one site's rows, so the site column is left out of the sort.
    key = [c.name for c in table.primary_key.columns if c.name in frame.columns and c.name != "site"]
    order = _key_order(frame, key) if key and len(frame) > 1 else slice(None)
    cols = [c for c in table.columns if c.name in frame.columns]
    rows = zip(*(_values(frame[c.name], c)[order].tolist() for c in cols))
    names = ", ".join(f'"{c.name}"' for c in cols)
    if conn.dialect.name == "postgresql":
        raw = conn.connection.driver_connection
        with raw.cursor() as cur, cur.copy(f'COPY "{table.name}" ({names}) FROM STDIN') as copy:
            for row in rows:
                copy.write_row(row)
    else:
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql("PRAGMA cache_size = -262144")  # 256 MB page cache for big inserts
        marks = ", ".join("?" if conn.dialect.paramstyle == "qmark" else "%s" for _ in cols)
        # The driver's own cursor takes the row iterator as is (SQLAlchemy would want a list).
        with closing(conn.connection.driver_connection.cursor()) as cur:
            cur.executemany(f'INSERT INTO "{table.name}" ({names}) VALUES ({marks})', rows)
    return len(frame)


def replace(conn: sa.Connection, table: sa.Table, where: sa.ColumnElement, frame: pd.DataFrame) -> int:
    conn.execute(table.delete().where(where))
    return insert_frame(conn, table, frame)


def read(conn: sa.Connection, query: sa.Select) -> pd.DataFrame:
    frame = pd.read_sql_query(query, conn)
    for col in query.selected_columns:
        if isinstance(col.type, (sa.Date, sa.DateTime)) and col.name in frame:
            frame[col.name] = pd.to_datetime(frame[col.name])
    return frame


def write_runs(conn: sa.Connection, table: sa.Table, key: str, site: str, start: pd.Timestamp,
               end: pd.Timestamp, new_runs: pd.DataFrame, value_cols: tuple[str, ...]) -> int:
    """Replace the days [start, end) of a runs table and keep it canonical.

    Stored runs touching the window are read, cut to their parts outside it, merged with the new
    runs and coalesced, so a series written day by day equals the same series written at once.
    """
    c = table.c
    touching = (c.site == site) & (c.day_to >= start.date()) & (c.day_from <= end.date())
    old = read(conn, sa.select(*table.columns).where(touching)).drop(columns="site")
    before = old[old["day_from"] < start].assign(day_to=lambda x: x["day_to"].clip(upper=start))
    after = old[old["day_to"] > end].assign(day_from=lambda x: x["day_from"].clip(lower=end))
    merged = pd.concat([df for df in (before, after, run_ops.clip(new_runs, start, end)) if not df.empty],
                       ignore_index=True)
    merged = run_ops.coalesce(merged, [key], value_cols) if not merged.empty else merged
    return replace(conn, table, touching, merged.assign(site=site))


def write_movements(conn: sa.Connection, site: str, movements: pd.DataFrame, months: pd.DatetimeIndex) -> int:
    c = t.MRR_MOVEMENTS.c
    where = (c.site == site) & c.month.in_([m.date() for m in months])
    return replace(conn, t.MRR_MOVEMENTS, where, movements.assign(site=site))


def stored_closing_days(conn: sa.Connection, site: str, months: pd.DatetimeIndex) -> dict:
    """The day each month was last closed on (to never move a month's close backwards)."""
    c = t.MRR_MOVEMENTS.c
    q = (sa.select(c.month, sa.func.max(c.as_of).label("as_of"))
         .where((c.site == site) & c.month.in_([m.date() for m in months])).group_by(c.month))
    frame = read(conn, q)
    return {pd.Timestamp(m): pd.Timestamp(a) for m, a in zip(pd.to_datetime(frame["month"]),
                                                             pd.to_datetime(frame["as_of"]))}


def write_overview(conn: sa.Connection, site: str, overview: pd.DataFrame, as_of: pd.Timestamp) -> int:
    """Replace the site's overview unless a later day is already stored (a backfill of old days
    must not overwrite today's state)."""
    c = t.SUBSCRIPTION_OVERVIEW.c
    stored = conn.execute(sa.select(sa.func.max(c.as_of)).where(c.site == site)).scalar()
    if stored is not None and pd.Timestamp(stored) > as_of:
        return 0
    return replace(conn, t.SUBSCRIPTION_OVERVIEW, c.site == site, overview.assign(site=site))


def write_events(conn: sa.Connection, site: str, events: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp) -> int:
    c = t.LIFECYCLE_EVENTS.c
    where = (c.site == site) & (c.occurred_at >= start.to_pydatetime()) & (c.occurred_at < end.to_pydatetime())
    return replace(conn, t.LIFECYCLE_EVENTS, where, events.assign(site=site))


def write_health(conn: sa.Connection, site: str, health: pd.DataFrame, days: pd.DatetimeIndex) -> int:
    c = t.ACCOUNT_HEALTH.c
    if len(days) == 0:
        return 0
    where = (c.site == site) & (c.day >= days.min().date()) & (c.day <= days.max().date())
    return replace(conn, t.ACCOUNT_HEALTH, where, health.assign(site=site))


def write_quarantine(conn: sa.Connection, site: str, quarantine: pd.DataFrame) -> int:
    """The site's quarantine as of this run (the transform reads the whole history every run)."""
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    q = quarantine.drop_duplicates(["stage", "object_id"]).assign(site=site, recorded_at=now)
    return replace(conn, t.QUARANTINE, t.QUARANTINE.c.site == site, q)


def extend_calendar(conn: sa.Connection, first: pd.Timestamp, last: pd.Timestamp) -> int:
    """Make calendar_days hold every day of [first, last] (the daily views expand runs over it)."""
    c = t.CALENDAR.c
    lo, hi = conn.execute(sa.select(sa.func.min(c.day), sa.func.max(c.day))).one()
    if lo is not None:  # the stored calendar is gap-free: add what lies outside [lo, hi]
        lo, hi = pd.Timestamp(lo), pd.Timestamp(hi)
        first, last = min(first, lo), max(last, hi)
    days = pd.date_range(first, last, freq="D")
    if lo is not None:
        days = days[(days < lo) | (days > hi)]
    return insert_frame(conn, t.CALENDAR, pd.DataFrame({"day": days}))
