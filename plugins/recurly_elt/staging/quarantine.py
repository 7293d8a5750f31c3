"""The record quarantine: what the record rules refused, so one bad record never blocks the others.

`extract_quarantine` holds one row per (site, resource, record, field) that a rule of
staging/rows.py refused, written in the same transaction as the page the record came in (so a
retry neither loses nor doubles it), and counted in the run log (`extract_run_log.quarantined`).

  site, resource     where the record came from
  record_key         the record id, or `sha256:<hex>` of its raw JSON when it has no usable id
  record_id          the record id (NULL when missing or empty)
  field              the declared path refused ("billing_info.payment_method.exp_year"); "" for
                     the record as a whole (not a JSON object, not valid JSON)
  raw_value          the value as JSON text (ASCII escapes, so NUL and surrogates are visible;
                     cut at 500 characters)
  reason             what the rule says ("3.5 is not an integer", "contains a NUL character")
  raw_json           the whole record as sent (cut at 100,000 characters)
  run_id             the run that first quarantined it; first_seen_at then
  last_run_id        the latest run that saw it (a re-read of a window sees it again);
  last_seen_at, times_seen
  resolved_at        set when a later version of the record passed the rules and was staged;
                     cleared if it is refused again

The data-quality check (`new_in_run`, the DAGs' `check_quarantine` task) fails a run in which
the quarantine grew, naming what was refused; the transform still runs on what was staged.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from typing import Iterable

import sqlalchemy as sa

from recurly_elt.staging.rows import RecordRejected
from recurly_elt.staging.tables import METADATA
from recurly_elt.staging.writers import upsert_rows

MAX_RAW_JSON_CHARS = 100_000

QUARANTINE = sa.Table(
    "extract_quarantine",
    METADATA,
    sa.Column("site", sa.Text(), primary_key=True),
    sa.Column("resource", sa.Text(), primary_key=True),
    sa.Column("record_key", sa.Text(), primary_key=True),
    sa.Column("field", sa.Text(), primary_key=True),
    sa.Column("record_id", sa.Text()),
    sa.Column("raw_value", sa.Text(), nullable=False),
    sa.Column("reason", sa.Text(), nullable=False),
    sa.Column("raw_json", sa.Text(), nullable=False),
    sa.Column("run_id", sa.Text()),
    sa.Column("first_seen_at", sa.DateTime(), nullable=False),
    sa.Column("last_run_id", sa.Text()),
    sa.Column("last_seen_at", sa.DateTime(), nullable=False),
    sa.Column("times_seen", sa.Integer(), nullable=False),
    sa.Column("resolved_at", sa.DateTime()),
)
_KEY = [QUARANTINE.c.site, QUARANTINE.c.resource, QUARANTINE.c.record_key, QUARANTINE.c.field]


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def record_key(rejected: RecordRejected) -> str:
    if rejected.record_id is not None:
        return rejected.record_id
    return "sha256:" + hashlib.sha256(rejected.raw_json.encode("utf-8", "backslashreplace")).hexdigest()


def add(conn: sa.Connection, rejected: Iterable[RecordRejected], run_id: str | None) -> int:
    """Quarantine refused records (one row per offending field); returns the records quarantined."""
    now = _now()
    rows, records = [], 0
    for record in rejected:
        records += 1
        key = record_key(record)
        raw_json = record.raw_json if len(record.raw_json) <= MAX_RAW_JSON_CHARS else (
            record.raw_json[:MAX_RAW_JSON_CHARS] + f"... ({len(record.raw_json):,} characters)")
        for problem in record.problems:
            rows.append({"site": record.site, "resource": record.resource, "record_key": key,
                         "field": problem.field, "record_id": record.record_id, "raw_value": problem.raw_value,
                         "reason": problem.reason, "raw_json": raw_json, "run_id": run_id, "first_seen_at": now,
                         "last_run_id": run_id, "last_seen_at": now, "times_seen": 1, "resolved_at": None})
    upsert_rows(conn, QUARANTINE, _KEY, rows, keep=("run_id", "first_seen_at"), count="times_seen")
    return records


def has_open(conn: sa.Connection, site: str, resource: str) -> bool:
    c = QUARANTINE.c
    return conn.execute(sa.select(sa.literal(1)).where(
        c.site == site, c.resource == resource, c.resolved_at.is_(None)).limit(1)).first() is not None


def resolve(conn: sa.Connection, site: str, resource: str, record_ids: list[str]) -> int:
    """Mark the open rows of records now staged (a valid version arrived) as resolved."""
    c = QUARANTINE.c
    resolved = 0
    for at in range(0, len(record_ids), 500):
        resolved += conn.execute(sa.update(QUARANTINE).where(
            c.site == site, c.resource == resource, c.record_id.in_(record_ids[at:at + 500]),
            c.resolved_at.is_(None)).values(resolved_at=_now())).rowcount
    return resolved


def new_in_run(conn: sa.Connection, run_id: str) -> list[dict]:
    """The open rows first quarantined by `run_id` (what the data-quality check reports)."""
    c = QUARANTINE.c
    stmt = (sa.select(c.site, c.resource, c.record_id, c.field, c.raw_value, c.reason)
            .where(c.run_id == run_id, c.resolved_at.is_(None))
            .order_by(c.site, c.resource, c.record_key, c.field))
    return [dict(r._mapping) for r in conn.execute(stmt)]


def read(conn: sa.Connection, site: str | None = None, resource: str | None = None) -> list[dict]:
    c = QUARANTINE.c
    stmt = sa.select(QUARANTINE).order_by(c.site, c.resource, c.record_key, c.field)
    if site is not None:
        stmt = stmt.where(c.site == site)
    if resource is not None:
        stmt = stmt.where(c.resource == resource)
    return [dict(r._mapping) for r in conn.execute(stmt)]


class QuarantineGrew(RuntimeError):
    """Records were refused in this run (the message names them, never a key)."""


def check(conn: sa.Connection, run_id: str, show: int = 20) -> int:
    """Raise QuarantineGrew naming what this run quarantined; 0 when nothing was."""
    rows = new_in_run(conn, run_id)
    if not rows:
        return 0
    records = {(r["site"], r["resource"], r["record_id"]) for r in rows}
    lines = [f"{r['site']}/{r['resource']} record {r['record_id']!r} field {r['field'] or '(record)'}: "
             f"{r['reason']} (value {r['raw_value'][:80]})" for r in rows[:show]]
    more = f"\n... and {len(rows) - show} more (table extract_quarantine)" if len(rows) > show else ""
    raise QuarantineGrew(f"{len(records)} record(s) quarantined by run {run_id!r}, {len(rows)} field(s); "
                         f"the rest of each page was staged:\n" + "\n".join(lines) + more)
