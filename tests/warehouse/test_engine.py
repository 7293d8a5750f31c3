"""SQLite engines of a fresh warehouse file: the switch to WAL waits for another connection's write lock.

SQLite's busy timeout does not cover `PRAGMA journal_mode = WAL` (it reads the header, then upgrades
to write it, and an upgrade meeting a write lock fails at once): two first connections switching
together, as mapped tasks on a fresh warehouse do, failed with "database is locked".
"""

from __future__ import annotations

import sqlite3
import threading
import time

from recurly_elt.warehouse.engine import create_engine_from_url


def test_first_connection_waits_for_a_write_lock_held_on_a_new_file(tmp_path):
    path = tmp_path / "warehouse.db"
    path.touch()  # a new, empty file in SQLite's default rollback-journal mode
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")  # another first connection, holding the write lock mid-switch
    released = threading.Timer(0.5, lambda: other.execute("COMMIT"))
    released.start()
    engine = create_engine_from_url(f"sqlite:///{path}")
    started = time.monotonic()
    try:
        with engine.connect() as conn:
            mode = conn.exec_driver_sql("PRAGMA journal_mode").scalar()
    finally:
        released.join()
        other.close()
        engine.dispose()
    assert mode == "wal"
    assert time.monotonic() - started >= 0.4  # it waited for the lock rather than failing at once


def test_a_file_already_in_wal_connects_without_waiting_for_a_writer(tmp_path):
    path = tmp_path / "warehouse.db"
    create_engine_from_url(f"sqlite:///{path}").dispose()
    first = create_engine_from_url(f"sqlite:///{path}")
    with first.connect() as conn:
        conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")
        conn.commit()
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("INSERT INTO t VALUES (1)")
    try:
        second = create_engine_from_url(f"sqlite:///{path}")
        with second.connect() as conn:  # WAL: a reader neither waits for nor blocks the writer
            assert conn.exec_driver_sql("SELECT count(*) FROM t").scalar() == 0
        second.dispose()
    finally:
        writer.execute("ROLLBACK")
        writer.close()
        first.dispose()
