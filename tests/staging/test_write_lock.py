"""SQLite writers queue on an OS lock held for exactly the write transaction."""

from __future__ import annotations

import os

import pytest

from recurly_elt.warehouse.engine import create_engine_from_url, write_transaction, writer_lock_path

fcntl = pytest.importorskip("fcntl")


def _try_lock(path) -> bool:
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


def test_write_transaction_holds_the_writer_lock_until_it_ends(tmp_path):
    engine = create_engine_from_url(f"sqlite:///{tmp_path / 'w.db'}")
    path = writer_lock_path(engine)
    assert path == tmp_path / "w.db-writer.lock"
    with write_transaction(engine) as conn:
        conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")
        assert not _try_lock(path)
    assert _try_lock(path)
    with pytest.raises(RuntimeError):
        with write_transaction(engine):
            raise RuntimeError("the transaction fails")
    assert _try_lock(path)  # released on failure too


def test_no_writer_lock_for_memory_or_postgres():
    assert writer_lock_path(create_engine_from_url("sqlite://")) is None
    assert writer_lock_path(create_engine_from_url("postgresql://u@localhost/db")) is None
