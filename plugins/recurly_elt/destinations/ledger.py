"""The load ledger, in the warehouse: what each destination holds, every request, every rejected row
and one row per run and destination. Columns are documented in docs/destinations.md.

  load_delivered   (destination, kind, object_key): the hash of the payload last delivered (and,
                   for objects, the payload itself, to send only changed fields), when, which run;
                   `uncertain` marks events of a batch whose answer was lost (at-most-once policy)
  load_requests    (destination, run_id, batch_id): one row per request, written `pending` and
                   committed before it is sent, settled `delivered` / `failed` / `uncertain` after
  load_rejections  (destination, kind, object_key): rows refused or set aside, with the reason; a
                   row leaves the table when it is delivered
  load_run_log     (run_id, destination): counts of one delivery run (dry runs included)
  load_settings    (destination, name): what a destination's data was first delivered with and
                   must keep (the account key form: account_keys.py)

A batch's outcome is written in one transaction: the request row (with the rows it delivered) and
the rejections, so the ledger never says more or less than the destination answered.

Delivered rows: a batch's settled request row carries the rows it delivered (`unindexed`, one
sequential write); the engine moves them into load_delivered in bulk, many batches and sorted by
key per transaction (`index_delivered`), and clears the column. Written one batch at a time, the
keys (event ids, account codes: random in the primary key's order) dirtied one index page each,
every page then written to SQLite's WAL and checkpointed again per commit: 40 % of the client's
CPU time of a 100,000-account first import (docs/benchmarks.md, "The cycle collector and
the ledger's writes"). A run killed between the two leaves `unindexed` set; the next run of the
destination moves those rows first (`index_unindexed`), before it reads the ledger, so nothing is
sent twice. The engine puts
the outcomes of the requests answered since its last write and the `pending` rows of the requests
it is about to send into one transaction (one per batch or fewer); the per-row writes
(load_delivered, pending rows) go to the driver's executemany with SQL built once, not through
SQLAlchemy's per-row parameter processing.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any, Iterable, NamedTuple

import sqlalchemy as sa

METADATA = sa.MetaData()

DELIVERED = sa.Table(
    "load_delivered", METADATA,
    sa.Column("destination", sa.Text(), primary_key=True),
    sa.Column("kind", sa.Text(), primary_key=True),
    sa.Column("object_key", sa.Text(), primary_key=True),
    sa.Column("payload_hash", sa.Text(), nullable=False),
    sa.Column("payload", sa.Text()),                      # objects: the JSON delivered; events: NULL
    sa.Column("delivered_at", sa.DateTime(), nullable=False),
    sa.Column("run_id", sa.Text(), nullable=False),
    sa.Column("uncertain", sa.Boolean(), nullable=False, default=False),
    sa.Column("batch_id", sa.Text()),
)

REQUESTS = sa.Table(
    "load_requests", METADATA,
    sa.Column("destination", sa.Text(), primary_key=True),
    sa.Column("run_id", sa.Text(), primary_key=True),
    sa.Column("batch_id", sa.Text(), primary_key=True),
    sa.Column("kind", sa.Text(), nullable=False),
    sa.Column("records", sa.Integer(), nullable=False),
    sa.Column("bytes", sa.Integer()),
    sa.Column("status", sa.Text(), nullable=False),       # pending | delivered | failed | uncertain
    sa.Column("http_status", sa.Integer()),
    sa.Column("attempts", sa.Integer(), nullable=False, default=0),
    sa.Column("ms", sa.Integer()),
    sa.Column("sent_at", sa.DateTime(), nullable=False),
    sa.Column("finished_at", sa.DateTime()),
    sa.Column("delivered", sa.Integer()),
    sa.Column("rejected", sa.Integer()),
    sa.Column("object_keys", sa.Text(), nullable=False),  # JSON list: what the batch carried
    sa.Column("job_id", sa.Text()),                       # asynchronous APIs: the destination's job
    sa.Column("error", sa.Text()),
    # JSON [[object_key, payload_hash, payload], ...]: the rows this request delivered while they are
    # not yet in load_delivered (NULL once they are): see "Delivered rows" in the module doc
    sa.Column("unindexed", sa.Text()),
)

REJECTIONS = sa.Table(
    "load_rejections", METADATA,
    sa.Column("destination", sa.Text(), primary_key=True),
    sa.Column("kind", sa.Text(), primary_key=True),
    sa.Column("object_key", sa.Text(), primary_key=True),
    sa.Column("payload_hash", sa.Text()),
    sa.Column("reason", sa.Text(), nullable=False),
    sa.Column("http_status", sa.Integer()),
    sa.Column("retryable", sa.Boolean(), nullable=False),
    sa.Column("first_seen_at", sa.DateTime(), nullable=False),
    sa.Column("last_seen_at", sa.DateTime(), nullable=False),
    sa.Column("attempts", sa.Integer(), nullable=False),
    sa.Column("run_id", sa.Text(), nullable=False),
)

RUN_COUNTERS = ("considered", "unchanged", "creates", "updates", "events", "sent", "rejected", "skipped",
                "requests", "polls", "status_429", "retries", "uncertain_batches")

RUN_LOG = sa.Table(
    "load_run_log", METADATA,
    sa.Column("run_id", sa.Text(), primary_key=True),
    sa.Column("destination", sa.Text(), primary_key=True),
    sa.Column("mode", sa.Text(), nullable=False),
    sa.Column("dry_run", sa.Boolean(), nullable=False),
    sa.Column("backfill", sa.Boolean(), nullable=False),
    sa.Column("status", sa.Text(), nullable=False),       # running | success | incomplete | failed
    *(sa.Column(c, sa.Integer(), nullable=False, default=0) for c in RUN_COUNTERS),
    sa.Column("seconds", sa.Float()),
    sa.Column("kinds", sa.Text()),                        # JSON: the counts per kind
    sa.Column("uncertain_batch_ids", sa.Text()),          # JSON list
    sa.Column("sample", sa.Text()),                       # dry run: JSON {kind: [request bodies]}
    sa.Column("started_at", sa.DateTime(), nullable=False),
    sa.Column("finished_at", sa.DateTime()),
    sa.Column("error", sa.Text()),
)


SETTINGS = sa.Table(
    "load_settings", METADATA,
    sa.Column("destination", sa.Text(), primary_key=True),
    sa.Column("name", sa.Text(), primary_key=True),
    sa.Column("value", sa.Text(), nullable=False),
    sa.Column("run_id", sa.Text(), nullable=False),       # the run that set it
    sa.Column("set_at", sa.DateTime(), nullable=False),
)


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def ensure_ledger(engine: sa.Engine) -> None:
    """The ledger tables, created race-free: every destination's task may start at once on a
    fresh warehouse (warehouse/schema.py)."""
    from recurly_elt.warehouse.schema import ensure_tables

    ensure_tables(engine, list(METADATA.tables.values()))


def _upsert(conn: sa.Connection, table: sa.Table, rows: list[dict], update: Iterable[str]) -> None:
    if not rows:
        return
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    stmt = insert(table)
    keys = [c.name for c in table.primary_key.columns]
    stmt = stmt.on_conflict_do_update(index_elements=keys, set_={c: stmt.excluded[c] for c in update})
    conn.execute(stmt, rows)


# -- reads ---------------------------------------------------------------------------------------

class Delivered(NamedTuple):
    """What load_delivered holds of one key: the hash and payload last delivered, and when."""

    payload_hash: str
    payload: str | None       # objects: the JSON delivered; events: None
    delivered_at: datetime    # naive UTC


def delivered(conn: sa.Connection, destination: str, kind: str) -> dict[str, Delivered]:
    """{object_key: Delivered} of one destination and kind, in one read."""
    t = DELIVERED
    rows = conn.execute(sa.select(t.c.object_key, t.c.payload_hash, t.c.payload, t.c.delivered_at)
                        .where(t.c.destination == destination, t.c.kind == kind))
    return {k: Delivered(h, p, at) for k, h, p, at in rows}


def rejections(conn: sa.Connection, destination: str, kind: str) -> dict[str, tuple[str | None, bool]]:
    """{object_key: (payload_hash, retryable)} of the rows currently rejected."""
    t = REJECTIONS
    rows = conn.execute(sa.select(t.c.object_key, t.c.payload_hash, t.c.retryable)
                        .where(t.c.destination == destination, t.c.kind == kind))
    return {k: (h, bool(r)) for k, h, r in rows}


def has_deliveries(conn: sa.Connection, destination: str) -> bool:
    t = DELIVERED
    return conn.execute(sa.select(t.c.object_key).where(t.c.destination == destination).limit(1)).first() is not None


def pending_batches(conn: sa.Connection, destination: str) -> list[dict]:
    """Requests of earlier runs still `pending`: their answer never reached the ledger."""
    t = REQUESTS
    rows = conn.execute(sa.select(t).where(t.c.destination == destination, t.c.status == "pending")
                        .order_by(t.c.sent_at, t.c.batch_id)).mappings()
    return [dict(r) for r in rows]


# -- writes --------------------------------------------------------------------------------------

def start_run(conn: sa.Connection, run_id: str, destination: str, mode: str, dry_run: bool,
              backfill: bool) -> None:
    row = {"run_id": run_id, "destination": destination, "mode": mode, "dry_run": dry_run,
           "backfill": backfill, "status": "running", **{c: 0 for c in RUN_COUNTERS}, "seconds": 0.0,
           "kinds": None, "uncertain_batch_ids": None, "sample": None, "started_at": utcnow(),
           "finished_at": None, "error": None}
    _upsert(conn, RUN_LOG, [row], [c for c in row if c not in ("run_id", "destination")])


def finish_run(conn: sa.Connection, run_id: str, destination: str, *, status: str, counts: dict[str, int],
               seconds: float, kinds: dict, uncertain: list[str], sample: dict | None, error: str | None) -> None:
    t = RUN_LOG
    conn.execute(t.update().where(t.c.run_id == run_id, t.c.destination == destination).values(
        status=status, seconds=round(seconds, 3), kinds=json.dumps(kinds, sort_keys=True),
        uncertain_batch_ids=json.dumps(uncertain), sample=json.dumps(sample) if sample is not None else None,
        finished_at=utcnow(), error=error, **{c: int(counts.get(c, 0)) for c in RUN_COUNTERS}))


def _driver_value(conn: sa.Connection, value: Any) -> Any:
    """A parameter as the driver takes it, stored as SQLAlchemy stores it (SQLite: DateTime as
    'YYYY-MM-DD HH:MM:SS.ffffff' text, booleans as 0/1)."""
    if conn.dialect.name == "sqlite":
        if isinstance(value, datetime):
            return value.strftime("%Y-%m-%d %H:%M:%S.%f")
        if isinstance(value, bool):
            return int(value)
    return value


def _insert_many(conn: sa.Connection, table: sa.Table, columns: tuple[str, ...], rows: list[tuple],
                 update: tuple[str, ...] | None = None) -> None:
    """INSERT (or upsert on the primary key, setting `update`) many rows through the driver's
    executemany: the statement text is built once per call, values are passed as they are."""
    if not rows:
        return
    mark = "?" if conn.dialect.name == "sqlite" else "%s"
    sql = f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({', '.join([mark] * len(columns))})"
    if update:
        keys = ", ".join(c.name for c in table.primary_key.columns)
        sql += f" ON CONFLICT ({keys}) DO UPDATE SET " + ", ".join(f"{c} = excluded.{c}" for c in update)
    if any(isinstance(v, (datetime, bool)) for v in rows[0]):
        rows = [tuple(_driver_value(conn, v) for v in row) for row in rows]
    conn.exec_driver_sql(sql, rows)


PENDING_COLUMNS = ("destination", "run_id", "batch_id", "kind", "records", "bytes", "status", "attempts", "sent_at",
                   "object_keys")


def mark_pending(conn: sa.Connection, destination: str, run_id: str, batch_id: str, kind: str,
                 keys: list[str], size: int) -> None:
    mark_pending_many(conn, destination, run_id, kind, [(batch_id, keys, size)])


def mark_pending_many(conn: sa.Connection, destination: str, run_id: str, kind: str,
                      batches: list[tuple[str, list[str], int]]) -> None:
    """Requests about to be sent, `pending`: [(batch_id, object keys, bytes)]."""
    now = utcnow()
    _insert_many(conn, REQUESTS, PENDING_COLUMNS, [
        (destination, run_id, batch_id, kind, len(keys), size, "pending", 0, now, json.dumps(keys))
        for batch_id, keys, size in batches])


def settle(conn: sa.Connection, destination: str, run_id: str, batch_id: str, *, status: str,
           http_status: int | None, attempts: int, ms: int, kind: str, delivered_rows: list[dict],
           rejected_rows: list[dict], job_id: str | None = None, error: str | None = None) -> "Unindexed | None":
    """Write one batch's outcome (one transaction: the caller's): the request row, carrying the
    rows it delivered, and the rejections. Returns the delivered rows for index_delivered (None
    when there are none)."""
    now = utcnow()
    mark = "?" if conn.dialect.name == "sqlite" else "%s"
    rows = [(r["object_key"], r["payload_hash"], r.get("payload")) for r in delivered_rows]
    conn.exec_driver_sql(  # one row by its key: the statement text, no expression built per call
        f"UPDATE {REQUESTS.name} SET status = {mark}, http_status = {mark}, attempts = {mark}, ms = {mark}, "
        f"finished_at = {mark}, delivered = {mark}, rejected = {mark}, job_id = {mark}, error = {mark}, "
        f"unindexed = {mark} WHERE destination = {mark} AND run_id = {mark} AND batch_id = {mark}",
        (status, http_status, attempts, ms, _driver_value(conn, now), len(delivered_rows), len(rejected_rows),
         job_id, error, json.dumps(rows) if rows else None, destination, run_id, batch_id))
    record_rejections(conn, destination, kind, run_id, rejected_rows, now=now)
    return Unindexed(kind, run_id, batch_id, now, rows) if rows else None


class Unindexed(NamedTuple):
    """A settled request's delivered rows, not yet in load_delivered."""

    kind: str
    run_id: str
    batch_id: str
    delivered_at: datetime
    rows: list[tuple[str, str, str | None]]   # (object_key, payload_hash, payload)


def index_delivered(conn: sa.Connection, destination: str, batches: list[Unindexed], *,
                    clear_rejections: Iterable[str] = ()) -> None:
    """Move settled requests' delivered rows into load_delivered and clear their `unindexed`.
    Delivered keys of the kinds in `clear_rejections` (those that may have rejected rows) leave
    load_rejections."""
    if not batches:
        return
    _write_delivered(conn, destination, [(destination, b.kind, key, digest, payload, b.delivered_at, b.run_id, False,
                                          b.batch_id) for b in batches for key, digest, payload in b.rows],
                     clear=set(clear_rejections))
    mark = "?" if conn.dialect.name == "sqlite" else "%s"
    conn.exec_driver_sql(f"UPDATE {REQUESTS.name} SET unindexed = NULL WHERE destination = {mark} AND run_id = {mark} "
                         f"AND batch_id = {mark}", [(destination, b.run_id, b.batch_id) for b in batches])


def index_unindexed(conn: sa.Connection, destination: str) -> int:
    """The delivered rows of requests whose run ended before moving them into load_delivered
    (killed): moved now. Returns how many."""
    t = REQUESTS
    found = conn.execute(sa.select(t.c.kind, t.c.run_id, t.c.batch_id, t.c.finished_at, t.c.unindexed).where(
        t.c.destination == destination, t.c.unindexed.is_not(None)).order_by(t.c.finished_at, t.c.batch_id)).all()
    batches = [Unindexed(kind, run_id, batch_id, at, [tuple(r) for r in json.loads(text)])
               for kind, run_id, batch_id, at, text in found]
    index_delivered(conn, destination, batches, clear_rejections={b.kind for b in batches})
    return sum(len(b.rows) for b in batches)


DELIVERED_COLUMNS = ("destination", "kind", "object_key", "payload_hash", "payload", "delivered_at", "run_id",
                     "uncertain", "batch_id")


def record_delivered(conn: sa.Connection, destination: str, kind: str, run_id: str, rows: list[dict], *,
                     batch_id: str | None = None, uncertain: bool = False, now: datetime | None = None) -> None:
    """rows: {object_key, payload_hash, payload}, written now (not through `unindexed`): the
    delivered-uncertain keys of a batch whose answer was lost. Delivered keys leave load_rejections."""
    _write_delivered(conn, destination, [
        (destination, kind, r["object_key"], r["payload_hash"], r.get("payload"), now or utcnow(), run_id,
         bool(uncertain), batch_id) for r in rows], clear={kind})


def _write_delivered(conn: sa.Connection, destination: str, rows: list[tuple], clear: set[str]) -> None:
    """Upsert load_delivered rows (tuples in DELIVERED_COLUMNS' order), sorted by key so the pages
    are filled in order; the keys of the kinds in `clear` leave load_rejections."""
    if not rows:
        return
    rows = sorted((tuple(_driver_value(conn, v) for v in row) for row in rows), key=lambda row: (row[1], row[2]))
    _insert_many(conn, DELIVERED, DELIVERED_COLUMNS, rows, DELIVERED_COLUMNS[3:])
    t = REJECTIONS
    for kind in sorted(clear & {row[1] for row in rows}):
        keys = [row[2] for row in rows if row[1] == kind]
        for i in range(0, len(keys), 500):
            conn.execute(t.delete().where(t.c.destination == destination, t.c.kind == kind,
                                          t.c.object_key.in_(keys[i:i + 500])))


def record_rejections(conn: sa.Connection, destination: str, kind: str, run_id: str, rows: list[dict], *,
                      now: datetime | None = None) -> None:
    """rows: {object_key, payload_hash, reason, http_status, retryable}; repeats add an attempt and
    move last_seen_at, first_seen_at stays."""
    if not rows:
        return
    now = now or utcnow()
    t = REJECTIONS
    keys = [r["object_key"] for r in rows]
    seen: dict[str, tuple[datetime, int]] = {}
    for i in range(0, len(keys), 500):
        for k, first, attempts in conn.execute(sa.select(t.c.object_key, t.c.first_seen_at, t.c.attempts).where(
                t.c.destination == destination, t.c.kind == kind, t.c.object_key.in_(keys[i:i + 500]))):
            seen[k] = (first, attempts)
    out = []
    for r in rows:
        first, attempts = seen.get(r["object_key"], (now, 0))
        out.append({"destination": destination, "kind": kind, "object_key": r["object_key"],
                    "payload_hash": r.get("payload_hash"), "reason": r["reason"][:2000],
                    "http_status": r.get("http_status"), "retryable": bool(r.get("retryable")),
                    "first_seen_at": first, "last_seen_at": now, "attempts": attempts + 1, "run_id": run_id})
    _upsert(conn, REJECTIONS, out, ["payload_hash", "reason", "http_status", "retryable", "last_seen_at",
                                    "attempts", "run_id"])


def close_pending(conn: sa.Connection, destination: str, run_id: str, batch_id: str, status: str,
                  error: str) -> None:
    t = REQUESTS
    conn.execute(t.update().where(t.c.destination == destination, t.c.run_id == run_id,
                                  t.c.batch_id == batch_id).values(status=status, error=error,
                                                                    finished_at=utcnow()))


def run_row(conn: sa.Connection, run_id: str, destination: str) -> dict[str, Any] | None:
    t = RUN_LOG
    row = conn.execute(sa.select(t).where(t.c.run_id == run_id, t.c.destination == destination)).mappings().first()
    return dict(row) if row else None


def setting(conn: sa.Connection, destination: str, name: str) -> dict[str, Any] | None:
    """{value, run_id, set_at} of a destination's setting, None when never set."""
    t = SETTINGS
    row = conn.execute(sa.select(t.c.value, t.c.run_id, t.c.set_at)
                       .where(t.c.destination == destination, t.c.name == name)).mappings().first()
    return dict(row) if row else None


def record_setting(conn: sa.Connection, destination: str, name: str, value: str, run_id: str) -> None:
    _upsert(conn, SETTINGS, [{"destination": destination, "name": name, "value": value, "run_id": run_id,
                              "set_at": utcnow()}], ["value", "run_id", "set_at"])
