"""Run the transform for a window of days [start, end), site by site, and write its tables.

The window says which rows are replaced, not what is read: every run reads the site's whole
staging (MRR history is rebuilt from all line items; "reactivation" needs earlier months), then
writes, in one transaction per site (reads included; on SQLite each table is written while the
next is computed):

  mrr_subscription_runs, mrr_account_runs   the days of the window (runs kept canonical)
  mrr_movements_monthly                     the months the window touches, closed on their last
                                            day or on the window's last day, never earlier than
                                            a close already stored
  lifecycle_events                          events that happened inside the window
  account_health_daily                      the window's days (or only its last `health_days`)
  subscription_overview                     the state on the window's last day (unless a later
                                            day is already stored)
  transform_quarantine                      the site's rows set aside, with their reasons

So running a 30-day range at once or day by day gives identical tables.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import date, datetime, timezone

import pandas as pd
import sqlalchemy as sa

from recurly_elt.transform import events as events_mod
from recurly_elt.transform import frames, health, movements, mrr, segments, store, tables, views
from recurly_elt.transform.config import TransformConfig
from recurly_elt.warehouse import columnar

DAY = pd.Timedelta(days=1)


@dataclass
class SiteResult:
    site: str
    rows_in: int = 0
    rows_out: dict[str, int] = field(default_factory=dict)
    quarantined: int = 0
    seconds: dict[str, float] = field(default_factory=dict)


class _Clock:
    def __init__(self, result: SiteResult):
        self.result, self.t = result, time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.result.seconds[stage] = round(self.result.seconds.get(stage, 0.0) + now - self.t, 3)
        self.t = now


def prepare(engine: sa.Engine) -> None:
    """Create the transform's tables and views if missing (idempotent)."""
    tables.create_transform_tables(engine)
    views.create_views(engine)


def drop_outputs(engine: sa.Engine) -> None:
    """Drop the transform's views and tables (a full rebuild starts from here)."""
    with engine.begin() as conn:
        for name in views.VIEWS:
            conn.exec_driver_sql(f"DROP VIEW IF EXISTS {name}")
    tables.METADATA.drop_all(engine)


def transform_site(db: columnar.Columnar, site: str, start: pd.Timestamp, end: pd.Timestamp,
                   config: TransformConfig, health_days: int | None = None, run_id: str | None = None) -> SiteResult:
    result = SiteResult(site)
    clock = _Clock(result)
    last_day = end - DAY
    # One transaction for the whole site, reads included: on SQLite it holds the write lock from
    # the start (so a second connection can read in parallel and see the same state), on
    # PostgreSQL it reads one snapshot. The worker process writes each table while the next one
    # is computed (Columnar.write_transaction); the events, the biggest table, go first, so that
    # their writing overlaps the most work.
    out = result.rows_out
    with db.write_transaction():
        months = movements.month_starts(start, last_day)
        stored_close = store.stored_closing_days(db, site, months)
        overview_day = store.stored_overview_day(db, site)
        with db.second_reader() as second:
            f = frames.read_site(db, site, second)  # sent now, read while the stages run (frames.SiteFrames)
        f.load(*frames.MRR_INPUTS)
        clock.lap("read")

        segs, q_lines = mrr.recurring_segments(f, config)
        f.release("line_items")  # the biggest table; later stages use the segments built from it
        sub_runs, q_fx = mrr.subscription_runs(segs, f, config)
        acct_runs = mrr.account_runs(sub_runs)
        clock.lap("mrr")

        reporting = config.reporting_currency
        out["mrr_subscription_runs"] = store.write_runs(
            db, tables.MRR_SUBSCRIPTION_RUNS, "subscription_id", site, start, end,
            sub_runs.assign(reporting_currency=reporting),
            ("mrr", "mrr_reporting", "account_id", "currency", "reporting_currency"))
        out["mrr_account_runs"] = store.write_runs(db, tables.MRR_ACCOUNT_RUNS, "account_id", site, start, end,
                                                   acct_runs.assign(currency=reporting), ("mrr", "currency"))
        clock.lap("write")

        evts = events_mod.lifecycle_events(f, segs, start, end)
        clock.lap("events")
        out["lifecycle_events"] = store.write_events(db, site, evts, start, end)
        store.fill_event_account_codes(db, site)
        del evts  # gone before the next stages build their own frames
        clock.lap("write")

        close = {m: max(min(m + pd.offsets.MonthEnd(0), last_day), stored_close.get(m, start - DAY)) for m in months}
        moves = movements.monthly(acct_runs, months, close)
        clock.lap("movements")
        out["mrr_movements_monthly"] = store.write_movements(db, site, moves.assign(currency=reporting), months)
        clock.lap("write")

        # A backfill of old days must not overwrite the overview of a later day.
        if overview_day is None or overview_day <= last_day:
            overview = segments.subscription_overview(f, sub_runs, last_day, config)
            clock.lap("status_segments")
            out["subscription_overview"] = store.write_overview(db, site, overview.assign(reporting_currency=reporting))
            clock.lap("write")
        else:
            out["subscription_overview"] = 0

        days = pd.date_range(start, last_day, freq="D")
        if health_days is not None:
            days = days[-health_days:] if health_days > 0 else days[:0]
        acct_health, q_health = health.account_health(f, sub_runs, acct_runs, segs, days, config)
        clock.lap("health")
        out["account_health_daily"] = store.write_health(db, site, acct_health.assign(currency=reporting), days)

        quarantine = pd.concat([q_lines, q_fx, q_health], ignore_index=True)
        result.quarantined = len(quarantine)
        out["transform_quarantine"] = store.write_quarantine(db, site, quarantine)
        first = min(sub_runs["day_from"].min(), start) if not sub_runs.empty else start
        store.extend_calendar(db, first, last_day)
        db.sync()  # what the worker still had to write counts as writing
        clock.lap("write")
        result.rows_in = f.rows_in
        db.execute(tables.RUN_LOG.insert().values(
            site=site, run_id=run_id, window_start=start.date(), window_end=end.date(), rows_in=result.rows_in,
            rows_out=sum(out.values()), quarantined=result.quarantined, seconds=sum(result.seconds.values()),
            finished_at=datetime.now(timezone.utc).replace(tzinfo=None)))
    return result


def run(engine: sa.Engine, start: date | str, end: date | str, *, sites: list[str] | None = None,
        health_days: int | None = None, config: TransformConfig | None = None,
        run_id: str | None = None) -> list[SiteResult]:
    """Transform the days [start, end) for the given sites (default: every staged site)."""
    start_ts, end_ts = pd.Timestamp(start).normalize(), pd.Timestamp(end).normalize()
    if end_ts <= start_ts:
        raise ValueError(f"empty transform window [{start_ts.date()}, {end_ts.date()})")
    config = config or TransformConfig.load()
    prepare(engine)
    if sites is None:
        with engine.connect() as conn:
            sites = frames.staged_sites(conn)
    with columnar.connect(engine) as db:
        return [transform_site(db, s, start_ts, end_ts, config, health_days, run_id) for s in sites]


def history_start(engine: sa.Engine) -> date | None:
    """The first day anything was billed or subscribed (the one-time import's window start)."""
    from recurly_elt.staging.tables import staging_table

    with engine.connect() as conn:
        firsts = [conn.execute(sa.select(sa.func.min(staging_table(n).c[col]))).scalar()
                  for n, col in (("subscriptions", "created_at"), ("line_items", "start_date"),
                                 ("invoices", "created_at"), ("transactions", "created_at"))]
    firsts = [pd.Timestamp(x) for x in firsts if x is not None]
    return min(firsts).date() if firsts else None
