"""The extraction run log: one row per (run, site, resource), for analysts to query.

The row is created when a read starts (status `running`), its counters grow in the same
transaction as every committed page, and it ends `success` or `failed` (with the error message,
which never carries a key). A task killed outright stays `running` until its retry takes the row
over: `attempts` then counts the tries, and the counters keep adding up, so the row always tells
what the run as a whole did. Columns are documented in docs/extraction.md.
"""

from __future__ import annotations

from datetime import datetime, timezone

import sqlalchemy as sa

from recurly_elt.staging.tables import METADATA

RUN_LOG = sa.Table(
    "extract_run_log",
    METADATA,
    sa.Column("run_id", sa.Text(), primary_key=True),
    sa.Column("site", sa.Text(), primary_key=True),
    sa.Column("resource", sa.Text(), primary_key=True),
    sa.Column("conn_id", sa.Text()),
    sa.Column("mode", sa.Text()),                    # daily | import | manual
    sa.Column("window_start", sa.DateTime()),        # inclusive, NULL = no lower bound
    sa.Column("window_end", sa.DateTime()),          # exclusive, NULL = no upper bound
    sa.Column("status", sa.Text(), nullable=False),  # running | success | failed
    sa.Column("attempts", sa.Integer(), nullable=False),
    sa.Column("pages", sa.Integer(), nullable=False),
    sa.Column("records", sa.BigInteger(), nullable=False),
    sa.Column("inserted", sa.BigInteger(), nullable=False),
    sa.Column("updated", sa.BigInteger(), nullable=False),
    sa.Column("unchanged", sa.BigInteger(), nullable=False),
    sa.Column("snapshots", sa.BigInteger(), nullable=False),
    sa.Column("quarantined", sa.BigInteger(), nullable=False, server_default="0"),  # records refused (extract_quarantine)
    sa.Column("requests", sa.Integer(), nullable=False),
    sa.Column("status_429", sa.Integer(), nullable=False),
    sa.Column("retries", sa.Integer(), nullable=False),
    sa.Column("seconds", sa.Float(), nullable=False),
    sa.Column("resumed_from_page", sa.Integer()),    # pages already committed when this try started
    sa.Column("started_at", sa.DateTime(), nullable=False),
    sa.Column("finished_at", sa.DateTime()),
    sa.Column("error", sa.Text()),
)

COUNTERS = ("pages", "records", "inserted", "updated", "unchanged", "snapshots", "quarantined", "requests",
            "status_429", "retries", "seconds")


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def _key(run_id: str, site: str, resource: str):
    c = RUN_LOG.c
    return sa.and_(c.run_id == run_id, c.site == site, c.resource == resource)


def start(conn: sa.Connection, *, run_id: str, site: str, resource: str, conn_id: str | None, mode: str,
          window_start: datetime | None, window_end: datetime | None, resumed_from_page: int | None) -> None:
    """Open the row, or take over the row of an earlier try of the same run (counters kept)."""
    exists = conn.execute(sa.select(RUN_LOG.c.attempts).where(_key(run_id, site, resource))).first()
    if exists:
        conn.execute(sa.update(RUN_LOG).where(_key(run_id, site, resource)).values(
            status="running", attempts=RUN_LOG.c.attempts + 1, error=None, finished_at=None,
            window_start=window_start, window_end=window_end, resumed_from_page=resumed_from_page,
        ))
        return
    conn.execute(sa.insert(RUN_LOG).values(
        run_id=run_id, site=site, resource=resource, conn_id=conn_id, mode=mode,
        window_start=window_start, window_end=window_end, status="running", attempts=1,
        resumed_from_page=resumed_from_page, started_at=_now(), **{k: 0 for k in COUNTERS},
    ))


def add(conn: sa.Connection, *, run_id: str, site: str, resource: str, **increments: float) -> None:
    """Add to the counters (one UPDATE; called in each page's transaction)."""
    unknown = set(increments) - set(COUNTERS)
    if unknown:
        raise ValueError(f"unknown run-log counters: {sorted(unknown)}")
    values = {k: RUN_LOG.c[k] + v for k, v in increments.items() if v}
    if values:
        conn.execute(sa.update(RUN_LOG).where(_key(run_id, site, resource)).values(**values))


def finish(conn: sa.Connection, *, run_id: str, site: str, resource: str, status: str,
           error: str | None = None) -> None:
    conn.execute(sa.update(RUN_LOG).where(_key(run_id, site, resource)).values(
        status=status, finished_at=_now(), error=(error or None) and error[:2000],
    ))


def read(conn: sa.Connection, run_id: str | None = None) -> list[dict]:
    stmt = sa.select(RUN_LOG).order_by(RUN_LOG.c.started_at, RUN_LOG.c.site, RUN_LOG.c.resource)
    if run_id is not None:
        stmt = stmt.where(RUN_LOG.c.run_id == run_id)
    return [dict(r._mapping) for r in conn.execute(stmt)]
