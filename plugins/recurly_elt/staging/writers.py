"""Bulk writes per SQL dialect: the only place that knows how SQLite and PostgreSQL differ.

- `upsert_rows`: insert rows, replacing the non-key columns of rows whose key exists.
  SQLite: one `INSERT ... ON CONFLICT (...) DO UPDATE` run through executemany.
  PostgreSQL: COPY (psycopg 3 `cursor.copy`) into a temporary table shaped like the target, then
  one `INSERT ... SELECT ... ON CONFLICT DO UPDATE ... WHERE` the row changed, so a row whose
  content is already there is not rewritten (no dead tuple, no WAL).
- `insert_ignore_duplicates`: append-only inserts that skip keys already present (snapshots).

Both run inside the caller's transaction.
"""

from __future__ import annotations

from typing import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql


def upsert_rows(conn: sa.Connection, table: sa.Table, key: Sequence[sa.Column], rows: list[dict]) -> None:
    if not rows:
        return
    dialect = conn.dialect.name
    if dialect == "postgresql":
        _pg_copy_upsert(conn, table, key, rows)
    elif dialect == "sqlite":
        key_names = [c.name for c in key]
        non_key = [c.name for c in table.columns if c.name not in key_names]
        conflict = (f"ON CONFLICT ({', '.join(_q(n) for n in key_names)}) DO UPDATE SET "
                    + ", ".join(f"{_q(n)} = excluded.{_q(n)}" for n in non_key))
        _sqlite_executemany(conn, table, rows, conflict)
    else:
        raise NotImplementedError(f"no bulk upsert for the {dialect!r} dialect (use SQLite or PostgreSQL)")


def insert_ignore_duplicates(conn: sa.Connection, table: sa.Table, rows: list[dict]) -> None:
    """Insert rows, skipping those whose primary key exists (a safety net: callers pre-filter)."""
    if not rows:
        return
    dialect = conn.dialect.name
    if dialect == "postgresql":
        conn.execute(postgresql.insert(table).on_conflict_do_nothing(), rows)
    elif dialect == "sqlite":
        _sqlite_executemany(conn, table, rows, "ON CONFLICT DO NOTHING")
    else:
        raise NotImplementedError(f"no insert-or-ignore for the {dialect!r} dialect")


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _sqlite_executemany(conn: sa.Connection, table: sa.Table, rows: list[dict], conflict: str) -> None:
    """One INSERT through the driver's executemany, values converted by SQLAlchemy's own bind
    processors (so timestamps are stored exactly as SQLAlchemy stores and reads them), without
    SQLAlchemy's per-execution statement handling, which costs more than the insert itself."""
    names = [c.name for c in table.columns]
    processors = [c.type.bind_processor(conn.dialect) for c in table.columns]
    sql = (f"INSERT INTO {_q(table.name)} ({', '.join(_q(n) for n in names)}) "
           f"VALUES ({', '.join('?' for _ in names)}) {conflict}")
    pairs = list(zip(names, processors))
    params = [tuple(p(row.get(n)) if p else row.get(n) for n, p in pairs) for row in rows]
    conn.exec_driver_sql(sql, params)


def _pg_copy_upsert(conn: sa.Connection, table: sa.Table, key: Sequence[sa.Column], rows: list[dict]) -> None:
    names = [c.name for c in table.columns]
    temp = f"_load_{table.name}"
    quoted = ", ".join(f'"{n}"' for n in names)
    key_names = [c.name for c in key]
    non_key = [n for n in names if n not in key_names]
    # "Changed" means a business column differs; load metadata (_loaded_at, _run_id) does not count.
    business = [n for n in non_key if not n.startswith("_")]
    # Created once per database session, emptied at every commit: no DDL per page.
    conn.exec_driver_sql(
        f'CREATE TEMP TABLE IF NOT EXISTS "{temp}" (LIKE "{table.name}" INCLUDING DEFAULTS) ON COMMIT DELETE ROWS'
    )
    raw = conn.connection.driver_connection  # the psycopg 3 connection, same transaction
    with raw.cursor() as cur:
        with cur.copy(f'COPY "{temp}" ({quoted}) FROM STDIN') as copy:
            for row in rows:
                copy.write_row(tuple(row.get(n) for n in names))
    target = f'"{table.name}"'
    conflict = ", ".join(f'"{n}"' for n in key_names)
    assignments = ", ".join(f'"{n}" = EXCLUDED."{n}"' for n in non_key)
    current = ", ".join(f'{target}."{n}"' for n in business)
    incoming = ", ".join(f'EXCLUDED."{n}"' for n in business)
    conn.exec_driver_sql(
        f"INSERT INTO {target} ({quoted}) SELECT {quoted} FROM \"{temp}\" "
        f"ON CONFLICT ({conflict}) DO UPDATE SET {assignments} "
        f"WHERE ({current}) IS DISTINCT FROM ({incoming})"
    )
    conn.exec_driver_sql(f'TRUNCATE "{temp}"')
