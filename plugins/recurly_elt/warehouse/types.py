"""Column types with a storage of their own per dialect.

`Money`: a staged amount, exact on both warehouses. PostgreSQL stores NUMERIC(20, 6), exact as it
is. SQLite has no exact decimal: a column declared NUMERIC (or REAL) turns '0.005' into the nearest
binary double, so SQLite stores the decimal text itself (a TEXT column), exact to the digit.
Bound as decimal text (what staging rows hold, staging/rows.py), read through SQLAlchemy as
`Decimal`, and by the transform's columnar reads as int64 micro-units (warehouse/columnar.py),
never through a float. A SQLite table created before this type keeps its NUMERIC column: its
values read back through SQLite's 15-digit text of the double, which is the decimal Recurly sent
for any amount of at most 15 significant digits.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import sqlalchemy as sa

PRECISION, SCALE = 20, 6  # NUMERIC(20, 6): 14 digits before the point, 6 after


class Money(sa.types.TypeDecorator):
    """An exact amount: NUMERIC(20, 6) on PostgreSQL, decimal text on SQLite; Python `Decimal`."""

    impl = sa.Numeric(PRECISION, SCALE, asdecimal=True)
    cache_ok = True
    precision, scale = PRECISION, SCALE

    def load_dialect_impl(self, dialect: sa.Dialect) -> sa.types.TypeEngine:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(sa.Text())
        return dialect.type_descriptor(sa.Numeric(PRECISION, SCALE, asdecimal=True))

    def process_bind_param(self, value: Any, dialect: sa.Dialect) -> Any:
        if value is None:
            return None
        if isinstance(value, float):
            raise TypeError(f"a binary float ({value!r}) bound to a money column: pass a Decimal or decimal text")
        text = str(Decimal(value))
        return text if dialect.name == "sqlite" else Decimal(text)

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> Decimal | None:
        # str(): a pre-existing SQLite NUMERIC column returns a double; its text is the decimal sent.
        return None if value is None else Decimal(str(value))


class MartMoney(Money):
    """A transform output amount: `Money` whose SQLite text always has exactly SCALE decimals
    ('103.430000', what the columnar writer's Arrow cast gives too), so SQL can read it as integer
    micro-units by dropping the point (transform/views.py). A value with more decimals is refused."""

    cache_ok = True

    def process_bind_param(self, value: Any, dialect: sa.Dialect) -> Any:
        exact = super().process_bind_param(value, dialect)
        if exact is None:
            return None
        fixed = Decimal(exact).quantize(Decimal(1).scaleb(-SCALE))
        if fixed != Decimal(exact):  # NUMERIC(20, 6) would round it: refused on both warehouses
            raise ValueError(f"amount {exact} has more than {SCALE} decimals")
        return format(fixed, "f") if dialect.name == "sqlite" else fixed

