"""SQLAlchemy engines for the warehouse: from a URL, or from the Airflow connection `recurly_warehouse`.

SQLite is the embedded default. Mapped extraction tasks run in separate processes and write to the
same file at once, so every SQLite engine gets:

- `journal_mode=WAL`: readers never block the writer and the writer never blocks readers. The
  switch to WAL happens once, on the first connections to a new file. It is the one statement the
  busy timeout does not cover: SQLite reads the header, then upgrades to write it, and an upgrade
  that meets another connection's write lock fails at once with "database is locked" (two first
  connections switching together, as mapped tasks starting on a fresh warehouse do). So it is retried
  here until the busy timeout; once the file is WAL the statement only reads the header;
- `busy_timeout`: a writer waits for the lock instead of failing with "database is locked";
- `synchronous=NORMAL`: durable at each checkpoint, safe with WAL, much faster than FULL;
- `wal_autocheckpoint=10000` pages (40 MB with 4 KiB pages, instead of 4 MB): a page of 200
  records writes about 100 database pages, so the default checkpointed (and fsynced) every few
  commits; a larger WAL cut the write cost per record by about a quarter. `journal_size_limit`
  truncates the WAL back to 64 MB after a checkpoint so it does not stay large on disk;
- transactions opened through `write_transaction()` start with `BEGIN IMMEDIATE`, taking the write
  lock up front. A deferred transaction that reads first and writes later can fail with SQLITE_BUSY
  without waiting (another writer committed since its read snapshot); taking the lock first makes
  the busy timeout apply. Plain reads keep SQLite's deferred BEGIN and never block writers;
- `write_transaction()` also queues writers on a blocking OS lock (`flock` on `<database>-writer.lock`
  next to the file) before BEGIN. SQLite's own busy handler polls with sleeps growing to 100 ms, so
  with several writers the write lock sat idle most of the time (3 readers wrote slower than 1);
  queued on the OS lock, the next writer starts the moment the previous one commits. Writers that
  do not use `write_transaction()` stay correct (SQLite's lock is still the guard), they only poll.

PostgreSQL uses psycopg 3 (`postgresql+psycopg://`). Its `write_transaction()` runs with
`SET LOCAL synchronous_commit = off`: a commit returns without waiting for the WAL flush (fsync),
which took about a quarter of a single reader's time. Atomicity is untouched; a server crash can lose the last
few hundred milliseconds of commits, and since every page commits together with its checkpoint,
the retry then re-reads exactly the pages lost.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: SQLite's busy handler alone
    fcntl = None  # type: ignore[assignment]

import sqlalchemy as sa

log = logging.getLogger(__name__)

WAREHOUSE_CONN_ID = "recurly_warehouse"
SQLITE_BUSY_TIMEOUT_MS = 60_000
SQLITE_WAL_AUTOCHECKPOINT_PAGES = 10_000
SQLITE_JOURNAL_SIZE_LIMIT = 64 * 1024 * 1024
_IMMEDIATE = "recurly_elt_begin_immediate"


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy's "begin" event decide how a transaction starts (the pysqlite driver would
    # otherwise issue its own deferred BEGIN lazily before the first write).
    dbapi_connection.isolation_level = None
    cur = dbapi_connection.cursor()
    cur.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
    _switch_to_wal(cur)
    cur.execute("PRAGMA synchronous = NORMAL")
    cur.execute(f"PRAGMA wal_autocheckpoint = {SQLITE_WAL_AUTOCHECKPOINT_PAGES}")
    cur.execute(f"PRAGMA journal_size_limit = {SQLITE_JOURNAL_SIZE_LIMIT}")
    cur.close()


def _switch_to_wal(cur: Any) -> None:
    """`PRAGMA journal_mode = WAL`, retried while another connection holds the write lock (see the
    module doc: the busy timeout does not apply to this statement)."""
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    pause = 0.005
    while True:
        try:
            mode = cur.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            break
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() + pause > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.1)
    if mode not in ("wal", "memory"):  # an in-memory database has no WAL
        log.warning("the SQLite warehouse stays in journal_mode %r (WAL refused): concurrent tasks "
                    "will wait on each other's reads", mode)


def _sqlite_on_begin(conn: sa.Connection) -> None:
    immediate = conn.get_execution_options().get(_IMMEDIATE, False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def normalize_url(url: str | sa.URL) -> sa.URL:
    """Accept the short forms people type: `postgresql://` means psycopg 3, a bare path means SQLite."""
    if isinstance(url, sa.URL):
        parsed = url
    elif "://" not in str(url):
        parsed = sa.make_url(f"sqlite:///{Path(str(url)).expanduser()}")
    else:
        parsed = sa.make_url(str(url))
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def create_engine_from_url(url: str | sa.URL, **kwargs: Any) -> sa.Engine:
    """An engine for a warehouse URL, with the SQLite settings above when the URL is SQLite."""
    parsed = normalize_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        kwargs.setdefault("connect_args", {}).setdefault("timeout", SQLITE_BUSY_TIMEOUT_MS / 1000)
        engine = sa.create_engine(parsed, **kwargs)
        sa.event.listen(engine, "connect", _sqlite_on_connect)
        sa.event.listen(engine, "begin", _sqlite_on_begin)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return sa.create_engine(parsed, **kwargs)


def writer_lock_path(engine: sa.Engine) -> Path | None:
    """The file writers of this SQLite database queue on; None for other databases and in-memory ones."""
    if engine.dialect.name != "sqlite" or fcntl is None:
        return None
    database = engine.url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(f"{database}-writer.lock")


@contextmanager
def queued_writer(engine: sa.Engine) -> Iterator[None]:
    """Hold the OS writer lock of a SQLite file (see module doc); a no-op elsewhere.

    A new descriptor per transaction: flock belongs to an open file description, so threads of one
    process exclude each other as processes do. The lock file is left in place (removing it would let
    two writers lock different files).
    """
    path = writer_lock_path(engine)
    if path is None:
        yield
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


@contextmanager
def write_transaction(engine: sa.Engine) -> Iterator[sa.Connection]:
    """A connection inside one transaction that holds the write lock from its start (see module doc)."""
    with queued_writer(engine), engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            conn = conn.execution_options(**{_IMMEDIATE: True})
        with conn.begin():
            if engine.dialect.name == "postgresql":
                conn.exec_driver_sql("SET LOCAL synchronous_commit = off")
            yield conn


def url_from_connection(conn: Any) -> sa.URL:
    """The SQLAlchemy URL an Airflow Connection describes (sqlite file path, or postgres parts).

    Relative SQLite paths are taken as they are (relative to the working directory); the local
    settings loader resolves them against the project when it creates the connection.
    """
    extra = conn.extra_dejson if hasattr(conn, "extra_dejson") else {}
    if extra.get("sqlalchemy_url"):
        return normalize_url(extra["sqlalchemy_url"])
    conn_type = (conn.conn_type or "").lower()
    if conn_type == "sqlite":
        return normalize_url(conn.host or conn.schema or "")
    if conn_type in ("postgres", "postgresql"):
        return sa.URL.create(
            "postgresql+psycopg",
            username=conn.login or None,
            password=conn.password or None,
            host=conn.host or None,
            port=conn.port or None,
            database=conn.schema or None,
        )
    raise ValueError(
        f"connection {conn.conn_id!r}: conn_type {conn.conn_type!r} is not a supported warehouse "
        "(use sqlite or postgres, or set extra.sqlalchemy_url)"
    )


def engine_for_connection(conn_id: str = WAREHOUSE_CONN_ID, **kwargs: Any) -> sa.Engine:
    """The warehouse engine of an Airflow connection (default `recurly_warehouse`)."""
    from airflow.sdk import BaseHook  # Airflow only when a connection is asked for

    return create_engine_from_url(url_from_connection(BaseHook.get_connection(conn_id)), **kwargs)
