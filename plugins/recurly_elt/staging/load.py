"""Bulk upserts of API objects into staging, with their snapshot rows.

One page of records is written in one transaction:

1. the records are rows already (`rows.py`: tuples in table column order, values as stored),
   deduplicated by key (the last version in the page wins);
2. one bulk statement per dialect (`writers.upsert_changed`) inserts the new keys and rewrites
   the keys whose raw JSON changed, unless the staged version is newer (a stale copy listed
   later, with an older updated_at, never replaces it). Unchanged rows are not written at all,
   so a re-run of a window rewrites nothing; the statement's counts give inserted / updated /
   unchanged (stale copies count as unchanged);
3. one `INSERT ... SELECT` (`writers.append_snapshots`) appends a snapshot row for each key of
   the page whose snapshot columns differ from its latest snapshot. Snapshots are keyed
   (site, id, observed_updated_at) and inserted with ON CONFLICT DO NOTHING, so observing the
   same version twice adds nothing.

No row-by-row ORM and no per-row query: a page costs a handful of statements whatever its size.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Iterable

import sqlalchemy as sa

from recurly_elt.recurly.resources import Resource, get as get_resource
from recurly_elt.staging import tables
from recurly_elt.staging.rows import converter, datetime_text
from recurly_elt.staging.quarantine import QUARANTINE
from recurly_elt.staging.runlog import RUN_LOG
from recurly_elt.staging.state import CHECKPOINTS, WATERMARKS
from recurly_elt.staging.writers import append_snapshots, upsert_changed
from recurly_elt.warehouse.engine import write_transaction
from recurly_elt.warehouse.schema import ensure_tables


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


def _extraction_tables() -> list[sa.Table]:
    return [*tables.all_tables(), CHECKPOINTS, WATERMARKS, RUN_LOG, QUARANTINE]


def ensure_staging_tables(engine: sa.Engine) -> None:
    """Create every staging, snapshot and extraction-state table that does not exist yet, and add
    columns newer versions declare to tables an older one created (idempotent, race-free:
    warehouse/schema.py)."""
    ensure_tables(engine, _extraction_tables())


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


def loaded_at_text(moment: datetime | None = None) -> str:
    """`_loaded_at` of the rows written now, as stored."""
    return datetime_text(moment or datetime.now(timezone.utc).replace(tzinfo=None))


def prepare_rows(resource: Resource, site: str, objects: Iterable[dict], *, run_id: str | None = None,
                 loaded_at: datetime | None = None) -> list[tuple]:
    """Decoded API objects to staging rows (see rows.py), deduplicated by key (the last one wins)."""
    convert = converter(resource.name)
    stamp = loaded_at_text(loaded_at)
    return dedupe(resource, [convert.from_object(obj, site, stamp, run_id) for obj in objects], site)


def dedupe(resource: Resource, rows: list[tuple], site: str) -> list[tuple]:
    """Rows with distinct keys: of two versions of a record the one with the later cursor
    (updated_at) wins, the later one in the list on a tie; keys are never empty (rows.py refuses
    such records)."""
    convert = converter(resource.name)
    at, cursor_at = convert.key_index, convert.cursor_index
    by_key: dict[str, tuple] = {}
    for row in rows:
        kept = by_key.get(row[at])
        if kept is None or cursor_at is None or (row[cursor_at] or "") >= (kept[cursor_at] or ""):
            by_key[row[at]] = row
    return list(by_key.values()) if len(by_key) != len(rows) else rows


def upsert_page(
    conn: sa.Connection,
    resource: Resource,
    site: str,
    objects: Iterable[dict] | None = None,
    *,
    run_id: str | None = None,
    loaded_at: datetime | None = None,
    rows: list[tuple] | None = None,
) -> UpsertResult:
    """The per-page step inside a caller's transaction (the extractor adds its checkpoint to it).

    Pass decoded API `objects`, or `rows` already made by `prepare_rows` / `rows.RowConverter`
    (distinct keys, all of this `site`).
    """
    if rows is None:
        rows = prepare_rows(resource, site, objects or [], run_id=run_id, loaded_at=loaded_at)
    if not rows:
        return UpsertResult()
    pk = resource.primary_key
    table = tables.staging_table(resource.name)
    newer = resource.cursor if resource.cursor in table.c else None
    inserted, updated = upsert_changed(conn, table, ("site", pk), rows, newer=newer)
    key_at = converter(resource.name).key_index
    snapshots = append_snapshots(conn, table, tables.snapshot_table(resource.name), pk,
                                 [c.name for c in resource.snapshot_columns if c.name != pk], site,
                                 [row[key_at] for row in rows])
    return UpsertResult(inserted=inserted, updated=updated, unchanged=len(rows) - inserted - updated,
                        snapshots=snapshots)
