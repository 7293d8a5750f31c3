"""Bulk upserts of API objects into staging, with their snapshot rows.

One page of objects is written in one transaction:

1. the objects become typed rows (`tables.to_row`); the page's current rows are read back by key
   (one query) and each object is classified as inserted, updated (its raw JSON differs) or
   unchanged. Unchanged rows are not written at all, so a re-run of a window rewrites nothing;
2. the new and changed rows go in with one bulk statement per dialect (`writers.py`):
   SQLite `INSERT ... ON CONFLICT(site, id) DO UPDATE` through executemany, PostgreSQL COPY into
   a temporary table and one `INSERT ... SELECT ... ON CONFLICT DO UPDATE`;
3. for those rows, a snapshot row is appended when a snapshot column differs from the latest
   snapshot of that (site, id). Snapshots are keyed (site, id, observed_updated_at) and inserted
   with ON CONFLICT DO NOTHING, so observing the same version twice adds nothing.

No row-by-row ORM anywhere: a page costs three or four statements whatever its size.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any, Iterable

import sqlalchemy as sa

from recurly_elt.recurly.resources import Resource, get as get_resource
from recurly_elt.staging import tables
from recurly_elt.staging.runlog import RUN_LOG
from recurly_elt.staging.state import CHECKPOINTS, WATERMARKS
from recurly_elt.staging.writers import insert_ignore_duplicates, upsert_rows
from recurly_elt.warehouse.engine import write_transaction

# Keep IN (...) lists under SQLite's historic 999 bound-parameter limit.
_KEY_CHUNK = 500


@dataclass
class UpsertResult:
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    snapshots: int = 0

    def __add__(self, other: "UpsertResult") -> "UpsertResult":
        return UpsertResult(*(a + b for a, b in zip(asdict(self).values(), asdict(other).values())))

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def ensure_staging_tables(engine: sa.Engine) -> None:
    """Create every staging, snapshot and extraction-state table that does not exist yet (idempotent)."""
    tables.METADATA.create_all(engine, tables=[*tables.all_tables(), CHECKPOINTS, WATERMARKS, RUN_LOG])


def upsert_records(
    engine: sa.Engine,
    resource_name: str,
    site: str,
    objects: Iterable[dict],
    run_id: str | None = None,
) -> UpsertResult:
    """Upsert API objects of one resource and site into stg_<name> (+ snapshots), in one transaction.

    Creates the tables when missing. For large inputs, call it once per page: each call is one
    transaction.
    """
    ensure_staging_tables(engine)
    resource = get_resource(resource_name)
    with write_transaction(engine) as conn:
        return upsert_page(conn, resource, site, objects, run_id=run_id)


def prepare_rows(resource: Resource, site: str, objects: Iterable[dict], *, run_id: str | None = None,
                 loaded_at: datetime | None = None) -> dict[str, dict]:
    """Objects to typed rows keyed by id (the last version in the input wins).

    Pure CPU work: callers that hold a write lock (the extractor) do it before taking the lock, so
    concurrent writers to one SQLite file wait only for the SQL.
    """
    loaded_at = loaded_at or datetime.now(timezone.utc).replace(tzinfo=None)
    pk = resource.primary_key
    rows: dict[str, dict] = {}
    for obj in objects:
        row = tables.to_row(resource, obj, site, loaded_at=loaded_at, run_id=run_id)
        if row[pk] is None:
            raise ValueError(f"{resource.name}: a record of site {site!r} has no {pk!r}: {json.dumps(obj)[:200]}")
        rows[row[pk]] = row
    return rows


def upsert_page(
    conn: sa.Connection,
    resource: Resource,
    site: str,
    objects: Iterable[dict] | None = None,
    *,
    run_id: str | None = None,
    loaded_at: datetime | None = None,
    rows: dict[str, dict] | None = None,
) -> UpsertResult:
    """The per-page step inside a caller's transaction (the extractor adds its checkpoint to it).

    Pass API `objects`, or `rows` already made by `prepare_rows`.
    """
    if rows is None:
        rows = prepare_rows(resource, site, objects or [], run_id=run_id, loaded_at=loaded_at)
    if not rows:
        return UpsertResult()
    pk = resource.primary_key

    table = tables.staging_table(resource.name)
    current = _current_raw_json(conn, table, pk, site, list(rows))
    result = UpsertResult()
    changed: list[dict] = []
    for key, row in rows.items():
        before = current.get(key)
        if before is None:
            result.inserted += 1
        elif before != row["raw_json"]:
            result.updated += 1
        else:
            result.unchanged += 1
            continue
        changed.append(row)

    if changed:
        upsert_rows(conn, table, [table.c.site, table.c[pk]], changed)
        result.snapshots = _append_snapshots(conn, resource, site, changed)
    return result


def _current_raw_json(conn: sa.Connection, table: sa.Table, pk: str, site: str, keys: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for i in range(0, len(keys), _KEY_CHUNK):
        chunk = keys[i : i + _KEY_CHUNK]
        stmt = sa.select(table.c[pk], table.c.raw_json).where(table.c.site == site, table.c[pk].in_(chunk))
        out.update((k, v) for k, v in conn.execute(stmt))
    return out


def _comparable(value: Any) -> Any:
    # Money round-trips through NUMERIC(20, 6): compare at that precision.
    return round(value, 6) if isinstance(value, float) else value


def _append_snapshots(conn: sa.Connection, resource: Resource, site: str, rows: list[dict]) -> int:
    snap_cols = [c.name for c in resource.snapshot_columns if c.name != resource.primary_key]
    if not snap_cols:
        return 0
    pk = resource.primary_key
    snap = tables.snapshot_table(resource.name)
    keys = [r[pk] for r in rows]

    latest: dict[str, tuple[datetime, tuple]] = {}
    existing: set[tuple[str, datetime]] = set()
    for i in range(0, len(keys), _KEY_CHUNK):
        chunk = keys[i : i + _KEY_CHUNK]
        stmt = sa.select(snap.c[pk], snap.c.observed_updated_at, *(snap.c[c] for c in snap_cols)).where(
            snap.c.site == site, snap.c[pk].in_(chunk)
        )
        for key, observed, *values in conn.execute(stmt):
            existing.add((key, observed))
            if key not in latest or observed > latest[key][0]:
                latest[key] = (observed, tuple(_comparable(v) for v in values))

    new_rows = []
    for row in rows:
        values = tuple(_comparable(row[c]) for c in snap_cols)
        previous = latest.get(row[pk])
        if previous is not None and previous[1] == values:
            continue
        observed = row.get("updated_at") or row.get("created_at") or row["_loaded_at"]
        if (row[pk], observed) in existing:  # this version was observed already
            continue
        new_rows.append(
            {"site": site, pk: row[pk], "observed_updated_at": observed,
             **{c: row[c] for c in snap_cols}, "_loaded_at": row["_loaded_at"], "_run_id": row["_run_id"]}
        )
    insert_ignore_duplicates(conn, snap, new_rows)
    return len(new_rows)
