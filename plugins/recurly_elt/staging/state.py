"""Extraction state: page checkpoints and watermarks, kept in the warehouse beside the data.

- `extract_checkpoints`: one row per (site, resource, window) being read. It is written in the
  same transaction as the page it follows, so after a crash the row names exactly the next page
  to read (the API's `next` link, plus the last (updated_at, id) committed as a fallback when a
  cursor is no longer accepted). A retry of the same window resumes there; the row is deleted
  when the window completes.
- `extract_watermarks`: per (site, resource), the end of the latest window read completely and
  the highest updated_at seen. It only moves forward and only when a window completes.

Windows are stored as ISO-8601 text, '' meaning unbounded, so they can be part of a key.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

import sqlalchemy as sa

from recurly_elt.staging.tables import METADATA
from recurly_elt.staging.writers import upsert_rows

CHECKPOINTS = sa.Table(
    "extract_checkpoints",
    METADATA,
    sa.Column("site", sa.Text(), primary_key=True),
    sa.Column("resource", sa.Text(), primary_key=True),
    sa.Column("window_start", sa.Text(), primary_key=True),
    sa.Column("window_end", sa.Text(), primary_key=True),
    sa.Column("parent_id", sa.Text()),     # child resources: the parent being read
    sa.Column("next_url", sa.Text()),      # the API's `next` link of the last committed page
    sa.Column("last_updated_at", sa.DateTime()),
    sa.Column("last_id", sa.Text()),
    sa.Column("pages", sa.Integer(), nullable=False),
    sa.Column("records", sa.BigInteger(), nullable=False),
    sa.Column("run_id", sa.Text()),
    sa.Column("_updated_at", sa.DateTime(), nullable=False),
)

WATERMARKS = sa.Table(
    "extract_watermarks",
    METADATA,
    sa.Column("site", sa.Text(), primary_key=True),
    sa.Column("resource", sa.Text(), primary_key=True),
    sa.Column("window_end", sa.DateTime()),        # end of the latest complete window
    sa.Column("max_updated_at", sa.DateTime()),    # highest updated_at staged by complete windows
    sa.Column("run_id", sa.Text()),
    sa.Column("_updated_at", sa.DateTime(), nullable=False),
)


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


@dataclass
class Checkpoint:
    parent_id: str | None
    next_url: str | None
    last_updated_at: datetime | None
    last_id: str | None
    pages: int
    records: int


def window_key(value: datetime | None) -> str:
    return "" if value is None else value.isoformat()


def load_checkpoint(conn: sa.Connection, site: str, resource: str, start: datetime | None,
                    end: datetime | None) -> Checkpoint | None:
    c = CHECKPOINTS.c
    row = conn.execute(
        sa.select(c.parent_id, c.next_url, c.last_updated_at, c.last_id, c.pages, c.records).where(
            c.site == site, c.resource == resource,
            c.window_start == window_key(start), c.window_end == window_key(end),
        )
    ).first()
    return Checkpoint(*row) if row else None


def save_checkpoint(conn: sa.Connection, site: str, resource: str, start: datetime | None,
                    end: datetime | None, checkpoint: Checkpoint, run_id: str | None) -> None:
    upsert_rows(conn, CHECKPOINTS, [CHECKPOINTS.c.site, CHECKPOINTS.c.resource, CHECKPOINTS.c.window_start,
                                    CHECKPOINTS.c.window_end], [{
        "site": site, "resource": resource, "window_start": window_key(start), "window_end": window_key(end),
        "parent_id": checkpoint.parent_id, "next_url": checkpoint.next_url,
        "last_updated_at": checkpoint.last_updated_at, "last_id": checkpoint.last_id,
        "pages": checkpoint.pages, "records": checkpoint.records, "run_id": run_id, "_updated_at": _now(),
    }])


def clear_checkpoint(conn: sa.Connection, site: str, resource: str, start: datetime | None,
                     end: datetime | None) -> None:
    c = CHECKPOINTS.c
    conn.execute(sa.delete(CHECKPOINTS).where(
        c.site == site, c.resource == resource,
        c.window_start == window_key(start), c.window_end == window_key(end),
    ))


def advance_watermark(conn: sa.Connection, site: str, resource: str, window_end: datetime | None,
                      max_updated_at: datetime | None, run_id: str | None) -> None:
    """Move the watermark forward (never back: a backfill of an old window leaves it alone)."""
    c = WATERMARKS.c
    old = conn.execute(sa.select(c.window_end, c.max_updated_at).where(
        c.site == site, c.resource == resource)).first()
    old_end, old_max = old if old else (None, None)
    upsert_rows(conn, WATERMARKS, [c.site, c.resource], [{
        "site": site, "resource": resource,
        "window_end": _later(old_end, window_end), "max_updated_at": _later(old_max, max_updated_at),
        "run_id": run_id, "_updated_at": _now(),
    }])


def read_watermark(conn: sa.Connection, site: str, resource: str) -> tuple[datetime | None, datetime | None]:
    c = WATERMARKS.c
    row = conn.execute(sa.select(c.window_end, c.max_updated_at).where(
        c.site == site, c.resource == resource)).first()
    return (row[0], row[1]) if row else (None, None)


def _later(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None or b is None:
        return a or b
    return max(a, b)
