"""Bulk writes per SQL dialect: the only place that knows how SQLite and PostgreSQL differ.

- `upsert_changed`: staging rows (tuples in table column order, values as stored: see rows.py).
  A row whose key exists is rewritten only if its `raw_json` differs, so a re-read of unchanged
  records writes nothing. Returns (inserted, updated).
  SQLite: count the keys already present, then one `INSERT ... ON CONFLICT (...) DO UPDATE ...
  WHERE raw_json IS NOT excluded.raw_json` through the driver's executemany (its rowcount is the
  rows inserted or updated).
  PostgreSQL: COPY (psycopg 3 `cursor.copy`) into a temporary table shaped like the target, then
  one `INSERT ... SELECT ... ON CONFLICT DO UPDATE ... WHERE` raw_json differs, `RETURNING
  (xmax = 0)` to tell inserts from updates.
- `upsert_rows`: small dict rows (checkpoints, watermarks): insert or overwrite.
- `append_snapshots`: one `INSERT ... SELECT` from staging into the snapshot table, for the given
  keys whose snapshot columns differ from their latest snapshot (a set operation in SQL, no
  per-row query), skipping (site, id, observed_updated_at) already present.

All run inside the caller's transaction.
"""

from __future__ import annotations

from typing import Any, Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

# Bound parameters per IN (...) list: far under SQLite's limit (32,766 since 3.32; 999 before).
KEY_CHUNK = 500


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _chunks(values: list, size: int = KEY_CHUNK):
    for i in range(0, len(values), size):
        yield values[i:i + size]


def _unsupported(conn: sa.Connection, what: str) -> NotImplementedError:
    return NotImplementedError(f"no {what} for the {conn.dialect.name!r} dialect (use SQLite or PostgreSQL)")


# -- staging rows ---------------------------------------------------------------------------------
def upsert_changed(conn: sa.Connection, table: sa.Table, key: Sequence[str], rows: list[tuple],
                   changed: str = "raw_json", newer: str | None = None) -> tuple[int, int]:
    """Insert new keys, rewrite existing ones whose `changed` column differs; (inserted, updated).

    With `newer` (a timestamp column, updated_at), an existing row is never rewritten by one whose
    `newer` is earlier: a stale copy does not replace the version already staged.
    """
    if not rows:
        return 0, 0
    dialect = conn.dialect.name
    if dialect == "sqlite":
        return _sqlite_upsert_changed(conn, table, key, rows, changed, newer)
    if dialect == "postgresql":
        return _pg_upsert_changed(conn, table, key, rows, changed, newer)
    raise _unsupported(conn, "bulk upsert")


def _not_older(target: str, excluded: str, newer: str | None) -> str:
    """SQL: the incoming row is not older than the staged one (or either has no timestamp)."""
    if newer is None:
        return ""
    staged, incoming = f"{target}.{_q(newer)}", f"{excluded}.{_q(newer)}"
    return f" AND ({staged} IS NULL OR {incoming} IS NULL OR {incoming} >= {staged})"


def _sqlite_upsert_changed(conn, table, key, rows, changed, newer) -> tuple[int, int]:
    names = [c.name for c in table.columns]
    site_key, id_key = key  # staging tables are keyed (site, id)
    site_at, id_at = names.index(site_key), names.index(id_key)
    existing = 0
    for site in {row[site_at] for row in rows}:
        ids = [row[id_at] for row in rows if row[site_at] == site]
        for chunk in _chunks(ids):
            existing += conn.exec_driver_sql(
                f"SELECT count(*) FROM {_q(table.name)} WHERE {_q(site_key)} = ? AND {_q(id_key)} IN "
                f"({', '.join('?' * len(chunk))})", (site, *chunk)).scalar_one()
    non_key = [n for n in names if n not in key]
    sql = (f"INSERT INTO {_q(table.name)} ({', '.join(map(_q, names))}) VALUES ({', '.join('?' * len(names))}) "
           f"ON CONFLICT ({', '.join(map(_q, key))}) DO UPDATE SET "
           + ", ".join(f"{_q(n)} = excluded.{_q(n)}" for n in non_key)
           + f" WHERE {_q(table.name)}.{_q(changed)} IS NOT excluded.{_q(changed)}"
           + _not_older(_q(table.name), "excluded", newer))
    written = conn.exec_driver_sql(sql, rows).rowcount
    inserted = len(rows) - existing
    return inserted, written - inserted


def _pg_copy_into_temp(conn: sa.Connection, table: sa.Table, rows: list[tuple]) -> str:
    """COPY rows into a session temp table shaped like `table` (created once, emptied by the caller)."""
    temp = f"_load_{table.name}"
    conn.exec_driver_sql(
        f"CREATE TEMP TABLE IF NOT EXISTS {_q(temp)} (LIKE {_q(table.name)} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS")
    names = ", ".join(_q(c.name) for c in table.columns)
    raw = conn.connection.driver_connection  # the psycopg 3 connection, same transaction
    with raw.cursor() as cur:
        with cur.copy(f"COPY {_q(temp)} ({names}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
    return temp


def _pg_upsert_changed(conn, table, key, rows, changed, newer) -> tuple[int, int]:
    temp = _pg_copy_into_temp(conn, table, rows)
    names = [c.name for c in table.columns]
    quoted = ", ".join(map(_q, names))
    target = _q(table.name)
    flags = conn.exec_driver_sql(
        f"INSERT INTO {target} ({quoted}) SELECT {quoted} FROM {_q(temp)} "
        f"ON CONFLICT ({', '.join(map(_q, key))}) DO UPDATE SET "
        + ", ".join(f"{_q(n)} = EXCLUDED.{_q(n)}" for n in names if n not in key)
        + f" WHERE {target}.{_q(changed)} IS DISTINCT FROM EXCLUDED.{_q(changed)}"
        + _not_older(target, "EXCLUDED", newer) + " RETURNING (xmax = 0)"
    ).scalars().all()
    conn.exec_driver_sql(f"DELETE FROM {_q(temp)}")  # for a second load in this transaction; no lock, no new file
    inserted = sum(1 for f in flags if f)
    return inserted, len(flags) - inserted


# -- snapshots ------------------------------------------------------------------------------------
def append_snapshots(conn: sa.Connection, staging: sa.Table, snapshot: sa.Table, pk: str,
                     snapshot_columns: Sequence[str], site: str, ids: list[str]) -> int:
    """Append a snapshot row for each staged (site, id) whose snapshot columns differ from its latest
    snapshot (or that has none); returns the rows appended."""
    if not ids or not snapshot_columns:
        return 0
    if conn.dialect.name not in ("sqlite", "postgresql"):
        raise _unsupported(conn, "snapshot append")
    same = "IS" if conn.dialect.name == "sqlite" else "IS NOT DISTINCT FROM"  # NULL-safe equality
    snap, key = _q(snapshot.name), _q(pk)
    # s: the staged row; p: its latest snapshot (q finds the latest observed_updated_at).
    sql = sa.text(
        f"INSERT INTO {snap} (site, {key}, observed_updated_at, {', '.join(map(_q, snapshot_columns))}, "
        f"_loaded_at, _run_id) "
        f"SELECT s.site, s.{key}, COALESCE(s.updated_at, s.created_at, s._loaded_at), "
        + "".join(f"s.{_q(c)}, " for c in snapshot_columns)
        + f"s._loaded_at, s._run_id FROM {_q(staging.name)} AS s "
        f"WHERE s.site = :site AND s.{key} IN :ids AND NOT EXISTS ("
        f"SELECT 1 FROM {snap} AS p WHERE p.site = s.site AND p.{key} = s.{key} "
        f"AND p.observed_updated_at = (SELECT max(q.observed_updated_at) FROM {snap} AS q "
        f"WHERE q.site = s.site AND q.{key} = s.{key}) AND "
        + " AND ".join(f"p.{_q(c)} {same} s.{_q(c)}" for c in snapshot_columns)
        + ") ON CONFLICT DO NOTHING"
    ).bindparams(sa.bindparam("ids", expanding=True))
    appended = 0
    for chunk in _chunks(ids):
        appended += conn.execute(sql, {"site": site, "ids": chunk}).rowcount
    return appended


# -- small state rows -----------------------------------------------------------------------------
def upsert_rows(conn: sa.Connection, table: sa.Table, key: Sequence[sa.Column], rows: list[dict[str, Any]],
                *, keep: Sequence[str] = (), count: str | None = None) -> None:
    """Insert dict rows, overwriting the non-key columns of keys that exist (state tables), except
    the columns in `keep` (first-seen facts); `count` names a column that adds up on each conflict."""
    if not rows:
        return
    dialect = conn.dialect.name
    if dialect == "postgresql":
        stmt = postgresql.insert(table)
    elif dialect == "sqlite":
        stmt = sqlite.insert(table)
    else:
        raise _unsupported(conn, "upsert")
    key_names = {c.name for c in key} | set(keep)
    update = {c.name: stmt.excluded[c.name] for c in table.columns if c.name not in key_names}
    if count is not None:
        update[count] = table.c[count] + stmt.excluded[count]
    stmt = stmt.on_conflict_do_update(index_elements=[c.name for c in key], set_=update)
    conn.execute(stmt, rows)
