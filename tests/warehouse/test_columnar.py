"""Columnar I/O (warehouse/columnar.py, warehouse/adbc.py) on SQLite and PostgreSQL.

What SQLAlchemy writes, the columnar reader reads with the declared kinds, and the other way
round; a failed queued write rolls the whole transaction back; the SQLite worker reports errors
and its own death instead of hanging; and a warehouse used through both libraries stays sound.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from recurly_elt.warehouse import adbc, columnar
from recurly_elt.warehouse.engine import create_engine_from_url

META = sa.MetaData()
SAMPLE = sa.Table(
    "sample", META,
    sa.Column("site", sa.Text(), primary_key=True), sa.Column("id", sa.Text(), primary_key=True),
    sa.Column("at", sa.DateTime()), sa.Column("day", sa.Date()),
    sa.Column("amount", sa.Numeric(20, 6, asdecimal=False)), sa.Column("count", sa.BigInteger()),
    sa.Column("flag", sa.Boolean()), sa.Column("note", sa.Text()),
)
ROWS = [
    {"site": "s", "id": "a", "at": dt.datetime(2025, 1, 2, 3, 4, 5, 600000), "day": dt.date(2025, 1, 2),
     "amount": 10, "count": 3, "flag": True, "note": "o'k"},
    {"site": "s", "id": "b", "at": None, "day": None, "amount": 10.5, "count": None, "flag": None, "note": None},
    {"site": "s", "id": "c", "at": dt.datetime(2026, 12, 31), "day": dt.date(2026, 12, 31),
     "amount": 0.1 + 0.2, "count": 0, "flag": False, "note": "é"},
]


@pytest.fixture
def engine(warehouse_url):
    eng = create_engine_from_url(warehouse_url)
    META.create_all(eng)
    yield eng
    eng.dispose()


def _expected() -> pd.DataFrame:
    return pd.DataFrame({
        "site": pd.Series(["s", "s", "s"], dtype="str"), "id": pd.Series(["a", "b", "c"], dtype="str"),
        "at": pd.to_datetime([ROWS[0]["at"], None, ROWS[2]["at"]]).as_unit("us"),
        "day": pd.to_datetime(["2025-01-02", None, "2026-12-31"]).as_unit("us"),
        "amount": [10.0, 10.5, 0.3], "count": [3.0, np.nan, 0.0],
        "flag": pd.array([True, None, False], dtype="boolean"),
        "note": pd.Series(["o'k", None, "é"], dtype="str"),
    })


def _read(db: columnar.Columnar) -> pd.DataFrame:
    return db.read(sa.select(*SAMPLE.columns).order_by(SAMPLE.c.id))


def test_reads_what_sqlalchemy_wrote_with_the_declared_kinds(engine):
    with engine.begin() as conn:
        conn.execute(SAMPLE.insert(), ROWS)
    with columnar.connect(engine) as db:
        got = _read(db)
    pd.testing.assert_frame_equal(got, _expected(), check_exact=False, rtol=1e-9)


def test_sqlalchemy_reads_what_the_columnar_insert_wrote(engine):
    with columnar.connect(engine) as db:
        with db.write_transaction():
            assert db.insert(SAMPLE, _expected().iloc[::-1]) == 3  # any order: stored in key order
        assert_frame = _read(db)
    pd.testing.assert_frame_equal(assert_frame, _expected(), check_exact=False, rtol=1e-9)
    with engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(sa.select(SAMPLE).order_by(SAMPLE.c.id))]
    assert rows[0]["at"] == ROWS[0]["at"] and rows[0]["day"] == ROWS[0]["day"]
    assert rows[0]["flag"] is True and rows[2]["flag"] is False and rows[1]["flag"] is None
    assert rows[1]["amount"] == 10.5 and rows[0]["count"] == 3 and rows[2]["note"] == "é"


def test_an_all_null_column_reads_as_its_declared_kind(engine):
    with engine.begin() as conn:
        conn.execute(SAMPLE.insert(), [{"site": "s", "id": str(i)} for i in range(3000)])
    with columnar.connect(engine) as db:
        got = _read(db)
    assert str(got["at"].dtype) == "datetime64[us]" and got["amount"].dtype == "float64"
    assert got["flag"].dtype == "boolean" and got["note"].dtype == "str" and got["note"].isna().all()


def test_a_failed_queued_write_rolls_the_whole_transaction_back(engine):
    with columnar.connect(engine) as db:
        with pytest.raises(adbc.Error):
            with db.write_transaction():
                db.insert(SAMPLE, _expected())
                db.execute("INSERT INTO no_such_table VALUES (1)")
                db.insert(SAMPLE, _expected().assign(site="t"))  # queued after the failure
        assert _read(db).empty
        with db.write_transaction():  # the connection is usable again
            db.insert(SAMPLE, _expected())
        assert len(_read(db)) == 3


def test_a_duplicate_key_fails_the_commit_not_silently(engine):
    with columnar.connect(engine) as db:
        with pytest.raises(adbc.Error, match="(?i)unique|duplicate"):
            with db.write_transaction():
                db.insert(SAMPLE, pd.concat([_expected(), _expected()]))
        assert _read(db).empty


def test_the_sqlite_worker_reports_its_death(sqlite_url):
    engine = create_engine_from_url(sqlite_url)
    META.create_all(engine)
    db = columnar.Columnar(engine)
    try:
        db.link.proc.kill()
        db.link.proc.wait()
        with pytest.raises(adbc.Error, match="exited"):
            _read(db)
    finally:
        db.close()


def test_sqlite_file_stays_sound_when_both_libraries_use_it(sqlite_url):
    """The engine (Python's sqlite3) keeps connections open while the worker (the driver's own
    SQLite) opens, writes and closes the same file, over and over."""
    engine = create_engine_from_url(sqlite_url)
    META.create_all(engine)
    with engine.connect() as held:
        held.execute(sa.select(sa.func.count()).select_from(SAMPLE)).scalar()
        held.commit()  # the connection stays open; its next read sees the later commits
        for i in range(5):
            with columnar.connect(engine) as db, db.write_transaction():
                db.insert(SAMPLE, _expected().assign(site=f"s{i}"))
            with engine.begin() as conn:
                conn.execute(SAMPLE.insert(), [{**r, "site": f"e{i}"} for r in ROWS])
        assert held.execute(sa.select(sa.func.count()).select_from(SAMPLE)).scalar() == 30
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"


def test_the_second_reader_sees_what_the_transaction_sees(engine):
    with engine.begin() as conn:
        conn.execute(SAMPLE.insert(), ROWS)
    query = sa.select(*SAMPLE.columns).order_by(SAMPLE.c.id)
    with columnar.connect(engine) as db, db.write_transaction():
        with db.second_reader() as second:
            assert second == (engine.dialect.name == "sqlite")
            later = [db.read_later(query, lane=lane) for lane in (0, 1, 0, 1)]
        frames = [f() for f in later]
    for frame in frames:
        pd.testing.assert_frame_equal(frame, _expected(), check_exact=False, rtol=1e-9)
