"""Exact money for the transform: integer micro-units and one rounding rule.

Every amount the transform computes is an int64 count of micro-units (10^-6 of the currency),
never a binary float:

- Staged amounts (`money` columns) are stored exactly (PostgreSQL NUMERIC(20, 6), SQLite the
  decimal text: warehouse/types.py) and come back from the warehouse as int64 micro-units already
  (warehouse/columnar.py scales the decimal text in integers); `micros` takes them as they are
  and refuses a float, so no staged amount passes through binary floating point.
- The transform's own tables store money the same way (transform/tables.py), so amounts read back
  from them (stored runs around a window) are the same int64 micro-units again.
- Decimal text (`unit_amount_decimal`, `quantity_decimal`: strings in the API) is parsed digit by
  digit (`parse_decimal`), never through a float.
- Rounding is half up (half away from zero), in integer arithmetic (`round_half_up`), to the
  currency's minor unit (`minor_unit`: the cent; the unit for JPY and other currencies without
  one; the mil for the three-decimal dinars).
- Amounts leave for the warehouse as Arrow decimal128 (`to_decimal`), built from the integers.
"""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

MICRO = 10**6
BOUND_RATE = 10**10  # amounts in minor units below this convert with an 8-decimal rate in int64

# ISO 4217 minor units other than 2 (the default).
MINOR_DIGITS = {**dict.fromkeys(("BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX",
                                 "UYI", "VND", "VUV", "XAF", "XOF", "XPF"), 0),
                **dict.fromkeys(("BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"), 3)}


_DECIMAL = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)")


class MoneyError(ValueError):
    """An amount the transform cannot carry exactly (the message names the record)."""


def minor_unit(currency: str | None) -> int:
    """The currency's smallest unit in micro-units (10,000 for a cent)."""
    digits = MINOR_DIGITS.get(str(currency).upper(), 2) if currency is not None else 2
    return 10 ** (6 - digits)


def minor_units(currency: pd.Series) -> np.ndarray:
    """`minor_unit` per row, looked up once per distinct currency."""
    codes, uniques = pd.factorize(currency)
    table = np.array([minor_unit(c) for c in uniques] + [minor_unit(None)], dtype=np.int64)
    return table[np.where(codes >= 0, codes, len(uniques))]


def micros(values: pd.Series, ids: pd.Series | None = None, what: str = "amount") -> np.ndarray:
    """Staged amounts (nullable int64 micro-units from the warehouse) as int64, 0 for NULL."""
    if not pd.api.types.is_integer_dtype(values.dtype):
        raise MoneyError(f"{what}: staged amounts arrive as integer micro-units, not {values.dtype}")
    return values.to_numpy(dtype=np.int64, na_value=0)


def parse_decimal(text: pd.Series, scale: int = MICRO) -> tuple[np.ndarray, np.ndarray]:
    """Decimal strings ("1.5", "-0.0125", "12") as int64 multiples of 1/scale, rounded half up when
    they have more digits than the scale. Returns (values, present): blank and NULL are absent.
    Only the present values (a few percent of the rows) are parsed, each as a Python Decimal."""
    arr = pa.array(pd.Series(text, dtype="str").array)
    trimmed = pc.utf8_trim_whitespace(arr)
    present = pc.fill_null(pc.greater(pc.utf8_length(trimmed), 0), False).to_numpy(zero_copy_only=False)
    out = np.zeros(len(arr), dtype=np.int64)
    if not present.any():
        return out, present
    step = Decimal(scale)
    values = []
    for value in pc.filter(trimmed, pa.array(present)).to_pylist():
        if not _DECIMAL.fullmatch(value):
            raise MoneyError(f"decimal value {value!r} is not a decimal number")
        values.append(int((Decimal(value) * step).to_integral_value(ROUND_HALF_UP)))
    out[present] = values
    return out, present


def round_half_up(value: np.ndarray, step: np.ndarray | int) -> np.ndarray:
    """Integers rounded half away from zero to a multiple of `step` (> 0), in integer arithmetic."""
    value = np.asarray(value, dtype=np.int64)
    step = np.asarray(step, dtype=np.int64)
    magnitude = (np.abs(value) + step // 2) // step * step
    # An odd step has no exact half: (|v| + step // 2) // step is then plain nearest rounding.
    return np.where(value < 0, -magnitude, magnitude)


def divide_half_up(numerator: np.ndarray, denominator: np.ndarray | int) -> np.ndarray:
    """numerator / denominator (> 0) rounded half away from zero to an integer."""
    n = np.asarray(numerator, dtype=np.int64)
    d = np.asarray(denominator, dtype=np.int64)
    q = (2 * np.abs(n) + d) // (2 * d)
    return np.where(n < 0, -q, q)


def mul_div_half_up(n: np.ndarray, m: np.ndarray | int, d: np.ndarray | int) -> np.ndarray:
    """n x m / d rounded half away from zero, exact in int64 without forming n x m: with
    |n| = a x d + b, it is a x m + b x m / d (m and d below 2^31, a x m below 2^62)."""
    n = np.asarray(n, dtype=np.int64)
    m, d = np.asarray(m, dtype=np.int64), np.asarray(d, dtype=np.int64)
    a, b = np.divmod(np.abs(n), d)
    q = a * m + (2 * b * m + d) // (2 * d)
    return np.where(n < 0, -q, q)


def to_decimal(micro: np.ndarray | pd.Series, valid: np.ndarray | None = None) -> pd.Series:
    """int64 micro-units as an Arrow decimal128(20, 6) Series (exact; `valid` False -> NULL)."""
    v = np.ascontiguousarray(np.asarray(micro, dtype=np.int64))
    words = np.empty((len(v), 2), dtype=np.int64)
    words[:, 0], words[:, 1] = v, v >> 63  # 128-bit two's complement, little endian
    mask = None if valid is None else pa.array(np.asarray(valid, dtype=bool)).buffers()[1]
    arr = pa.Array.from_buffers(pa.decimal128(20, 6), len(v), [mask, pa.py_buffer(words.tobytes())],
                                null_count=-1 if valid is not None else 0)
    return pd.Series(pd.arrays.ArrowExtensionArray(arr))

