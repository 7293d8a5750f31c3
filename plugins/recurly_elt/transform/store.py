"""Writing the transform's tables: bulk inserts and window replacement, on SQLite and PostgreSQL.

Every write replaces exactly the rows of one site and one date range (delete, then insert), inside
the caller's transaction, so a rerun of any window leaves the tables as one clean run would. Frames
go in and out column by column through the warehouse's columnar connection (ADBC: one prepared
statement on SQLite, a binary COPY on PostgreSQL), never a Python object per value.
"""

from __future__ import annotations

from datetime import datetime, timezone

import pandas as pd
import sqlalchemy as sa

from recurly_elt.transform import money
from recurly_elt.transform import runs as run_ops
from recurly_elt.transform import tables as t
from recurly_elt.warehouse.columnar import Columnar


def money_columns(table: sa.Table) -> list[str]:
    return [c.name for c in table.columns if c.info.get("money")]


def exact_money(table: sa.Table, frame: pd.DataFrame) -> pd.DataFrame:
    """The frame with its money columns (int64 micro-units) as exact decimals for the writer. A
    float there is a bug upstream (money never goes through a binary float): an error naming it."""
    cols = [c for c in money_columns(table) if c in frame.columns]
    if not cols:
        return frame
    out = frame.copy(deep=False)
    for c in cols:
        values = frame[c] if len(frame) else frame[c].astype("int64")
        if not pd.api.types.is_integer_dtype(values.dtype):
            raise TypeError(f"{table.name}.{c}: money must be integer micro-units, got {values.dtype}")
        valid = values.notna().to_numpy()
        out[c] = money.to_decimal(values.to_numpy(dtype="int64", na_value=0), valid).set_axis(frame.index)
    return out


def replace(db: Columnar, table: sa.Table, where: sa.ColumnElement, frame: pd.DataFrame) -> int:
    db.execute(table.delete().where(where))
    return db.insert(table, exact_money(table, frame))


def write_runs(db: Columnar, table: sa.Table, key: str, site: str, start: pd.Timestamp,
               end: pd.Timestamp, new_runs: pd.DataFrame, value_cols: tuple[str, ...]) -> int:
    """Replace the days [start, end) of a runs table and keep it canonical.

    Stored runs touching the window are read, cut to their parts outside it, merged with the new
    runs and coalesced, so a series written day by day equals the same series written at once.
    """
    c = table.c
    touching = (c.site == site) & (c.day_to >= start.date()) & (c.day_from <= end.date())
    # Money columns come back as the int64 micro-units they were written from (Int64: NULL as NA).
    old = db.read(sa.select(*table.columns).where(touching)).drop(columns="site")
    before = old[old["day_from"] < start].assign(day_to=lambda x: x["day_to"].clip(upper=start))
    after = old[old["day_to"] > end].assign(day_from=lambda x: x["day_from"].clip(lower=end))
    parts = [df for df in (before, after, run_ops.clip(new_runs, start, end)) if not df.empty]
    if not parts:  # nothing stored around the window and nothing new in it (a quiet window)
        db.execute(table.delete().where(touching))
        return 0
    merged = run_ops.coalesce(pd.concat(parts, ignore_index=True), [key], value_cols)
    return replace(db, table, touching, merged.assign(site=site))


def write_movements(db: Columnar, site: str, movements: pd.DataFrame, months: pd.DatetimeIndex) -> int:
    c = t.MRR_MOVEMENTS.c
    where = (c.site == site) & c.month.in_([m.date() for m in months])
    return replace(db, t.MRR_MOVEMENTS, where, movements.assign(site=site))


def stored_closing_days(db: Columnar, site: str, months: pd.DatetimeIndex) -> dict:
    """The day each month was last closed on (to never move a month's close backwards)."""
    c = t.MRR_MOVEMENTS.c
    q = (sa.select(c.month, sa.func.max(c.as_of).label("as_of"))
         .where((c.site == site) & c.month.in_([m.date() for m in months])).group_by(c.month))
    frame = db.read(q)
    return {pd.Timestamp(m): pd.Timestamp(a) for m, a in zip(pd.to_datetime(frame["month"]),
                                                             pd.to_datetime(frame["as_of"]))}


def stored_overview_day(db: Columnar, site: str) -> pd.Timestamp | None:
    """The day the site's stored overview describes (None when there is none)."""
    c = t.SUBSCRIPTION_OVERVIEW.c
    day = db.read(sa.select(sa.func.max(c.as_of).label("as_of")).where(c.site == site))["as_of"].iloc[0]
    return None if pd.isna(day) else day


def write_overview(db: Columnar, site: str, overview: pd.DataFrame) -> int:
    """Replace the site's overview (the caller keeps a later day's overview: a backfill of old
    days must not overwrite today's state)."""
    return replace(db, t.SUBSCRIPTION_OVERVIEW, t.SUBSCRIPTION_OVERVIEW.c.site == site,
                   overview.assign(site=site))


def write_events(db: Columnar, site: str, events: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp) -> int:
    c = t.LIFECYCLE_EVENTS.c
    where = (c.site == site) & (c.occurred_at >= start.to_pydatetime()) & (c.occurred_at < end.to_pydatetime())
    return replace(db, t.LIFECYCLE_EVENTS, where, events.assign(site=site))


def fill_event_account_codes(db: Columnar, site: str) -> None:
    """Give stored events the code of their account once it is staged.

    An event is written with the code of its account as staging holds it then; a one-time import
    up to date X does not stage an account updated after X (Recurly's `end_time` filters on
    `updated_at`), though it stages that account's older subscriptions and invoices, so their
    events are written without a code. The daily run that stages the account rewrites only its own
    window's events: this fills the code of the older ones (an account code never changes in
    Recurly), so a destination keyed by it receives them instead of refusing them as without
    identity. One UPDATE, the same on SQLite and PostgreSQL."""
    e = t.LIFECYCLE_EVENTS
    a = sa.table("stg_accounts", sa.column("site"), sa.column("id"), sa.column("code"))
    known = sa.and_(a.c.site == e.c.site, a.c.id == e.c.account_id, a.c.code.is_not(None), a.c.code != "")
    db.execute(
        e.update()
        .where(e.c.site == site, sa.or_(e.c.account_code.is_(None), e.c.account_code == ""),
               sa.exists(sa.select(a.c.code).where(known)))
        .values(account_code=sa.select(a.c.code).where(known).scalar_subquery())
    )


def write_health(db: Columnar, site: str, health: pd.DataFrame, days: pd.DatetimeIndex) -> int:
    c = t.ACCOUNT_HEALTH.c
    if len(days) == 0:
        return 0
    where = (c.site == site) & (c.day >= days.min().date()) & (c.day <= days.max().date())
    return replace(db, t.ACCOUNT_HEALTH, where, health.assign(site=site))


def write_quarantine(db: Columnar, site: str, quarantine: pd.DataFrame) -> int:
    """The site's quarantine as of this run (the transform reads the whole history every run)."""
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    q = quarantine.drop_duplicates(["stage", "object_id"]).assign(site=site, recorded_at=now)
    return replace(db, t.QUARANTINE, t.QUARANTINE.c.site == site, q)


def extend_calendar(db: Columnar, first: pd.Timestamp, last: pd.Timestamp) -> int:
    """Make calendar_days hold every day of [first, last] (the daily views expand runs over it)."""
    c = t.CALENDAR.c
    lo, hi = db.read(sa.select(sa.func.min(c.day).label("lo"), sa.func.max(c.day).label("hi"))).iloc[0]
    if pd.notna(lo):  # the stored calendar is gap-free: add what lies outside [lo, hi]
        first, last = min(first, lo), max(last, hi)
    days = pd.date_range(first, last, freq="D")
    if pd.notna(lo):
        days = days[(days < lo) | (days > hi)]
    return db.insert(t.CALENDAR, pd.DataFrame({"day": days}))
