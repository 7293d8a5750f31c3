"""Order-independent checksums of staging tables over their business columns.

Used to prove idempotency (a re-run leaves every table with the same checksum) and to compare
staging with a source. Business columns are all columns except load metadata, whose names start
with an underscore (`_loaded_at`, `_run_id`). Values are normalised before hashing (numbers at the
warehouse's 6-decimal precision, timestamps as ISO text) so SQLite and PostgreSQL agree.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa


@dataclass(frozen=True)
class TableChecksum:
    table: str
    rows: int
    digest: str


def _normalise(value: Any) -> str:
    if value is None:
        return "\x00"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, Decimal):  # a staged amount: its digits, exactly
        return f"{value:.6f}"
    if isinstance(value, float):
        return f"{value:.6f}"
    if isinstance(value, datetime):
        return value.replace(tzinfo=None).isoformat()
    return str(value)


def business_columns(table: sa.Table) -> list[sa.Column]:
    return [c for c in table.columns if not c.name.startswith("_")]


def table_checksum(engine: sa.Engine, table: sa.Table | str) -> TableChecksum:
    """Row count and a digest that does not depend on row order or physical layout."""
    if isinstance(table, str):
        table = sa.Table(table, sa.MetaData(), autoload_with=engine)
    cols = business_columns(table)
    row_digests = []
    with engine.connect() as conn:
        for row in conn.execute(sa.select(*cols)):
            joined = "\x1f".join(_normalise(v) for v in row)
            row_digests.append(hashlib.sha256(joined.encode()).digest())
    row_digests.sort()
    total = hashlib.sha256(b"".join(row_digests)).hexdigest()
    return TableChecksum(table=table.name, rows=len(row_digests), digest=total)


def checksums(engine: sa.Engine, tables: list[sa.Table]) -> dict[str, TableChecksum]:
    return {t.name: table_checksum(engine, t) for t in tables}
