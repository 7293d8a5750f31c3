"""Columnar reads and bulk writes of DataFrames, through ADBC (Arrow Database Connectivity).

Why: the transform moves millions of rows each way. Through a Python DB-API driver every value
becomes a Python object on the way out and another on the way in; at 100,000 accounts that was
more than half of the transform's time (docs/benchmarks.md). The ADBC drivers of SQLite and
PostgreSQL read a result straight into Arrow columns, and ingest Arrow columns through one prepared
statement (SQLite) or a binary COPY (PostgreSQL), without a Python object per value.

SQLAlchemy stays the owner of the schema (tables, views, DDL) and of every small statement; this
module only moves frames, in and out of tables SQLAlchemy declared. Statements are SQLAlchemy
constructs compiled with their values inlined (`literal_binds`), so no SQL text here depends on
a driver's parameter style.

Values are stored exactly as SQLAlchemy stores them, so either can read what the other wrote: on
SQLite datetimes are text 'YYYY-MM-DD HH:MM:SS.ffffff', dates 'YYYY-MM-DD', booleans 0/1 and
money (`Money` columns, staged and transformed) its decimal text; on PostgreSQL the native types
(NUMERIC through decimal128).

A read is typed by the SQLAlchemy columns it selects (their `kind`), never by what the driver
guessed: the SQLite driver infers each column's type from its values (an all-NULL column comes
back as int64; adbc.py fetches a result as one batch so that it sees every value first).

Frames come back as: timestamps and dates -> datetime64[us] (naive UTC), numbers and integers ->
float64 (NaN for NULL), staged amounts (`Money` columns, warehouse/types.py) -> pandas "Int64"
micro-units (10^-6 of the currency, NA for NULL: the decimal read as text and scaled in integers,
never through a float), booleans -> pandas "boolean", text -> pandas "str".
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa

from recurly_elt.warehouse import adbc
from recurly_elt.warehouse.engine import SQLITE_BUSY_TIMEOUT_MS, queued_writer
from recurly_elt.warehouse.types import Money

MICRO_DIGITS = 6  # a money frame counts micro-units


class MoneyOverflow(ValueError):
    """A staged amount too large for int64 micro-units (|x| >= 9.2 x 10^12)."""


def kind_of(type_: sa.types.TypeEngine) -> str:
    """The column kind a frame is typed by: timestamp, date, boolean, integer, money, number or string."""
    if isinstance(type_, Money):
        return "money"
    if isinstance(type_, sa.DateTime):
        return "timestamp"
    if isinstance(type_, sa.Date):
        return "date"
    if isinstance(type_, sa.Boolean):
        return "boolean"
    if isinstance(type_, sa.Integer):
        return "integer"
    if isinstance(type_, (sa.Numeric, sa.Float)):
        return "number"
    return "string"


def _link(engine: sa.Engine) -> adbc.Connection | adbc.Worker:
    """The engine's database through ADBC: a worker process for a SQLite file (adbc.py says why)."""
    url = engine.url
    if engine.dialect.name == "sqlite":
        if not url.database or url.database == ":memory:":
            raise ValueError("columnar I/O needs a SQLite file (an in-memory database is private to one connection)")
        return adbc.Worker(url.database, SQLITE_BUSY_TIMEOUT_MS)
    if engine.dialect.name == "postgresql":
        return adbc.Connection.postgresql(url.set(drivername="postgresql").render_as_string(hide_password=False))
    raise NotImplementedError(f"no columnar I/O for the {engine.dialect.name!r} dialect (use SQLite or PostgreSQL)")


class Columnar:
    """Frames in and out of one database connection, statements compiled for its dialect."""

    def __init__(self, engine: sa.Engine):
        self.engine, self.dialect = engine, engine.dialect
        self.link = _link(engine)

    @property
    def is_sqlite(self) -> bool:
        return self.dialect.name == "sqlite"

    def close(self) -> None:
        self.link.close()

    def sql(self, statement: sa.ClauseElement) -> str:
        return str(statement.compile(dialect=self.dialect, compile_kwargs={"literal_binds": True}))

    def execute(self, statement: sa.ClauseElement | str) -> None:
        self.link.execute(statement if isinstance(statement, str) else self.sql(statement))

    def read(self, query: sa.Select) -> pd.DataFrame:
        """The rows of a SELECT as a frame typed by its columns' kinds (see module doc)."""
        return self.read_later(query)()

    def read_later(self, query: sa.Select, lane: int = 0) -> Callable[[], pd.DataFrame]:
        """Send a SELECT now; the returned function waits for its frame. On SQLite the worker reads
        while the caller goes on; lane 1 is the second reader of `second_reader()`."""
        kinds = {c.name: kind_of(c.type) for c in query.selected_columns}
        inner = query.subquery()
        # Numbers are cast in SQL: SQLite may store a NUMERIC value as INTEGER or REAL row by row.
        # Money is read as its decimal text (PostgreSQL NUMERIC's own text; SQLite stores the text).
        cast = {"number": sa.Float, "money": sa.Text}
        cols = [sa.cast(inner.c[n], cast[k]).label(n) if k in cast else inner.c[n] for n, k in kinds.items()]
        result = self.link.submit_read(self.sql(sa.select(*cols)), lane=lane)
        return lambda: to_frame(result(), kinds)

    @contextmanager
    def second_reader(self) -> Iterator[bool]:
        """Inside `write_transaction`: a second connection that reads what this transaction reads,
        at the same time (lane 1 of `read_later`). Yields False where there is none (PostgreSQL:
        its one connection reads). On SQLite this transaction holds the write lock, so nothing can
        commit between its start and the second connection's first read: both see one state.
        Reads sent inside the block may be collected after it; its transaction ends after them."""
        if self.link.lanes < 2:
            yield False
            return
        self.link.execute("BEGIN", lane=1)
        self.link.submit_read("SELECT count(*) FROM sqlite_master", lane=1)()  # its snapshot starts here
        try:
            yield True
        finally:
            self.link.execute("ROLLBACK", lane=1)

    def insert(self, table: sa.Table, frame: pd.DataFrame) -> int:
        """Append the frame's rows (columns named as the table's; missing ones are NULL), in key order."""
        if frame.empty:
            return 0
        cols = [c for c in table.columns if c.name in frame.columns]
        arrow = lambda c: _to_arrow(frame[c.name], c.type, self.is_sqlite)  # noqa: E731
        # Rows in key order append to the key's B-tree instead of scattering over it (on SQLite,
        # several times faster). Arrow sorts the stored form (ISO text sorts as the times do); the
        # columns are converted and put in order one at a time, so that only one is ever unsorted.
        key = pa.table({c.name: arrow(c) for c in table.primary_key.columns if c.name in frame.columns})
        order = pc.sort_indices(key, sort_keys=[(k, "ascending") for k in key.column_names]) \
            if key.num_columns and len(frame) > 1 else None
        put = lambda a: a if order is None else a.take(order)  # noqa: E731
        data = pa.table([put(key.column(c.name) if c.name in key.column_names else arrow(c)) for c in cols],
                        names=[c.name for c in cols])
        del key
        self.link.ingest(table.name, data)
        return len(frame)

    @contextmanager
    def write_transaction(self) -> Iterator["Columnar"]:
        """One transaction holding the write lock from its start, as `engine.write_transaction`
        (SQLite: the writer queue, then BEGIN IMMEDIATE; PostgreSQL: asynchronous commit).
        Committed when the block ends, rolled back if it raises.

        On SQLite, statements and inserts are queued to the worker (adbc.Worker) and run while the
        block goes on; COMMIT is sent only once every one of them has succeeded."""
        with queued_writer(self.engine):
            # PostgreSQL: one snapshot for every read of the transaction, as SQLite's lock gives.
            self.execute("BEGIN IMMEDIATE" if self.is_sqlite else "BEGIN ISOLATION LEVEL REPEATABLE READ")
            if not self.is_sqlite:
                self.execute("SET LOCAL synchronous_commit = off")
            try:
                yield self
                self.link.sync()
            except BaseException:
                self.execute("ROLLBACK")
                self.link.sync(raise_errors=False)  # the first error is the one being raised
                raise
            self.execute("COMMIT")
            self.link.sync()

    def sync(self) -> None:
        """Wait until every queued statement and insert has run (raises the first failure)."""
        self.link.sync()


@contextmanager
def connect(engine: sa.Engine) -> Iterator[Columnar]:
    """A columnar connection to the engine's database, closed when the block ends."""
    db = Columnar(engine)
    try:
        yield db
    finally:
        db.close()


# -- Arrow -> pandas ------------------------------------------------------------------------------
def _timestamps(arr: pa.ChunkedArray) -> pa.ChunkedArray:
    t = arr.type
    if pa.types.is_timestamp(t):  # PostgreSQL: naive UTC already (a zoned one is cast to UTC first)
        return pc.cast(pc.cast(arr, pa.timestamp("us", tz="UTC")) if t.tz else arr, pa.timestamp("us"))
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_date(t):
        return pc.cast(arr, pa.timestamp("us"))  # SQLite's ISO text; PostgreSQL dates
    return pa.nulls(len(arr), pa.timestamp("us"))  # an all-NULL column the driver typed as int64


def money_micros(arr: pa.Array | pa.ChunkedArray, name: str = "amount") -> pd.arrays.IntegerArray:
    """Decimal text ("0.005", "123456789.987654") as nullable int64 micro-units, exactly: Arrow
    parses each text into a decimal128 with 6 decimals (a 7th decimal is an error, never rounded)
    and the micro-units are its 128-bit unscaled integer, kept when it fits 64 bits."""
    arr = arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
    if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        arr = pc.cast(arr, pa.string())  # an all-NULL column the driver typed as int64
    try:
        dec = pc.cast(arr, pa.decimal128(38, MICRO_DIGITS))
    except pa.ArrowInvalid as exc:
        raise ValueError(f"staged amount in column {name!r} is not a decimal with at most "
                         f"{MICRO_DIGITS} places: {exc}") from None
    words = np.frombuffer(dec.buffers()[1], dtype=np.int64)[2 * dec.offset: 2 * (dec.offset + len(dec))]
    low, high = words[0::2], words[1::2]
    nulls = dec.is_null().to_numpy(zero_copy_only=False)
    bad = (high != (low >> 63)) & ~nulls
    if bad.any():
        raise MoneyOverflow(f"staged amount {dec[int(np.flatnonzero(bad)[0])]} in column {name!r} is beyond "
                            "int64 micro-units (|x| < 9.2 x 10^12)")
    return pd.arrays.IntegerArray(np.where(nulls, 0, low), nulls)


def _column(arr: pa.ChunkedArray, kind: str, name: str = "") -> Any:
    if kind == "money":
        return money_micros(arr, name)
    if kind in ("timestamp", "date"):
        return _timestamps(arr).to_numpy(zero_copy_only=False).astype("datetime64[us]")
    if kind in ("number", "integer"):
        return pc.cast(arr, pa.float64()).to_numpy(zero_copy_only=False)
    if kind == "boolean":
        return pd.array(pc.cast(arr, pa.bool_()).to_pandas(types_mapper={pa.bool_(): pd.BooleanDtype()}.get),
                        dtype="boolean")
    values = arr if pa.types.is_string(arr.type) else pc.cast(arr, pa.string())
    return pd.array(values.to_pandas(), dtype="str")


def to_frame(table: pa.Table, kinds: dict[str, str]) -> pd.DataFrame:
    """An Arrow result as a frame of the dtypes the module doc lists, one column per kind."""
    return pd.DataFrame({name: _column(table.column(name), kind, name) for name, kind in kinds.items()},
                        index=pd.RangeIndex(table.num_rows))


# -- pandas -> Arrow ------------------------------------------------------------------------------
def _to_arrow(values: Any, type_: sa.types.TypeEngine, sqlite: bool) -> pa.Array:
    """One column of values as the Arrow array that stores them as SQLAlchemy would (module doc)."""
    kind = kind_of(type_)
    s = pd.Series(values)
    if kind in ("timestamp", "date"):
        arr = pa.array(pd.to_datetime(s).to_numpy(dtype="datetime64[us]"), type=pa.timestamp("us"))
        if kind == "date":
            arr = pc.cast(arr, pa.date32())
        # Arrow's own text of a timestamp[us] is SQLAlchemy's: 'YYYY-MM-DD HH:MM:SS.ffffff'.
        return pc.cast(arr, pa.string()) if sqlite else arr
    if kind == "money":
        if not (isinstance(s.dtype, pd.ArrowDtype) and pa.types.is_decimal(s.dtype.pyarrow_dtype)):
            raise TypeError(f"a money column takes Arrow decimals, not {s.dtype}: no float reaches a stored amount")
        decimals = pa.array(s.array)
        return pc.cast(decimals, pa.string()) if sqlite else pc.cast(decimals, pa.decimal128(type_.precision, type_.scale))
    if kind in ("number", "integer"):
        floats = pa.array(pd.to_numeric(s).to_numpy(dtype="float64", na_value=np.nan), from_pandas=True)
        if kind == "integer":
            return pc.cast(pc.round(floats), pa.int64())
        if not sqlite and isinstance(type_, sa.Numeric) and type_.precision:
            return pc.cast(floats, pa.decimal128(type_.precision, type_.scale or 0), safe=False)  # rounds
        return floats
    if kind == "boolean":
        flags = pa.array(s.astype("boolean"), type=pa.bool_(), from_pandas=True)
        return pc.cast(flags, pa.int64()) if sqlite else flags
    return pa.array(s.astype("str"), type=pa.string(), from_pandas=True)
