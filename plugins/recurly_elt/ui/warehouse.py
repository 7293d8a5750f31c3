"""Read-only access to the warehouse for the UI.

The UI never writes: its engine refuses writes at the connection level (SQLite `PRAGMA
query_only`, PostgreSQL `default_transaction_read_only`), on top of issuing SELECTs only, each
with bound parameters. Tables built by other stages (the load ledger, extraction quarantine) may
not exist yet: `Reader.has()` tells, and the pages say "not recorded yet" instead of failing.
"""

from __future__ import annotations

import math
import re
from datetime import date, datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any, Callable, Iterable

import sqlalchemy as sa

from recurly_elt.warehouse.engine import SQLITE_BUSY_TIMEOUT_MS, WAREHOUSE_CONN_ID, normalize_url


def _sqlite_read_only(dbapi_connection: Any, _record: Any) -> None:
    cur = dbapi_connection.cursor()
    cur.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
    cur.execute("PRAGMA query_only = ON")
    cur.close()


def read_only_engine(url: str | sa.URL) -> sa.Engine:
    """An engine on the warehouse URL whose connections cannot write."""
    parsed = normalize_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = sa.create_engine(parsed, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
        sa.event.listen(engine, "connect", _sqlite_read_only)
        return engine
    if parsed.get_backend_name() == "postgresql":
        return sa.create_engine(parsed, pool_pre_ping=True, pool_size=4,
                                connect_args={"options": "-c default_transaction_read_only=on"})
    return sa.create_engine(parsed, pool_pre_ping=True)


def engine_from_airflow_connection(conn_id: str = WAREHOUSE_CONN_ID) -> sa.Engine:
    """The read-only engine of the Airflow connection `recurly_warehouse` (in the API server)."""
    from airflow.sdk import BaseHook

    from recurly_elt.warehouse.engine import url_from_connection

    return read_only_engine(url_from_connection(BaseHook.get_connection(conn_id)))


# SQLite hands timestamps of raw SQL back as the text it stored ("2026-11-30 09:47:33.240651").
_STORED_TIMESTAMP = re.compile(r"^(\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2})\.\d+$")


def plain(value: Any) -> Any:
    """A JSON-ready value, the same from SQLite and PostgreSQL: timestamps as "YYYY-MM-DD HH:MM:SS",
    dates as ISO text, decimals and floats as floats (NaN as None)."""
    if isinstance(value, str):
        stored = _STORED_TIMESTAMP.match(value)
        return stored.group(1).replace("T", " ") if stored else value
    if isinstance(value, datetime):
        return value.isoformat(sep=" ", timespec="seconds")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


@lru_cache(maxsize=1)
def money_columns() -> frozenset[str]:
    """The names of the marts' amount columns (transform/tables.py)."""
    from recurly_elt.transform.tables import METADATA

    return frozenset(c.name for t in METADATA.sorted_tables for c in t.columns if c.info.get("money"))


class Reader:
    """One read-only connection for one request: rows as dicts of plain values, and answers kept
    until the next transform run (`kept`, see cache.py)."""

    def __init__(self, conn: sa.Connection, cache: Any = None):
        self.conn = conn
        self.cache = cache
        self._names: set[str] | None = None
        self._version: Any = ()

    def kept(self, question: Callable[..., Any], *args: Any) -> Any:
        """`question(self, *args)`, or its answer kept since the transform last ran."""
        if self.cache is None:
            return question(self, *args)
        if self._version == ():
            self._version = self.cache.version(self.conn)
        key = (question.__module__, question.__qualname__, args, self._version)
        return self.cache.get(key, lambda: question(self, *args))

    def has(self, *names: str) -> bool:
        """Whether every named table or view exists."""
        if self._names is None:
            inspector = sa.inspect(self.conn)
            self._names = set(inspector.get_table_names()) | set(inspector.get_view_names())
        return all(n in self._names for n in names)

    def rows(self, sql: str, **params: Any) -> list[dict[str, Any]]:
        """Rows as dicts of plain values; an amount column of the marts (SQLite stores its decimal
        text) is a number like the PostgreSQL NUMERIC of the same column."""
        result = self.conn.execute(sa.text(sql), params)
        keys = list(result.keys())
        amounts = money_columns()
        return [{k: plain(Decimal(v) if k in amounts and isinstance(v, str) else v) for k, v in zip(keys, r)}
                for r in result]

    def scalar(self, sql: str, **params: Any) -> Any:
        return plain(self.conn.execute(sa.text(sql), params).scalar())

    def in_list(self, column: str, name: str, values: Iterable[Any], params: dict[str, Any]) -> str:
        """`column IN (:name_0, ...)` with the values bound into params (no value in the SQL text)."""
        values = list(values)
        if not values:
            return "1 = 0"
        for i, v in enumerate(values):
            params[f"{name}_{i}"] = v
        return f"{column} IN ({', '.join(f':{name}_{i}' for i in range(len(values)))})"


EngineProvider = Callable[[], sa.Engine]
