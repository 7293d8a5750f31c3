"""The transform's exact money: parsing, half-up rounding in integers, FX, decimal output."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from recurly_elt.transform import fx, money
from recurly_elt.transform.config import TransformConfig


def test_staged_amounts_are_integer_micro_units_and_a_float_is_refused():
    staged = pd.Series(pd.array([5_000, None, -3_500_000], dtype="Int64"))
    assert money.micros(staged).tolist() == [5_000, 0, -3_500_000]
    with pytest.raises(money.MoneyError, match="unit_amount: staged amounts arrive as integer micro-units"):
        money.micros(pd.Series([0.005]), what="unit_amount")


def test_decimal_text_is_parsed_digit_by_digit():
    values, present = money.parse_decimal(pd.Series(["1.5", "-0.0125", "12", ".5", "", None, " 2.0000005 "]))
    assert values.tolist() == [1_500_000, -12_500, 12_000_000, 500_000, 0, 0, 2_000_001]  # 7th digit: half up
    assert present.tolist() == [True, True, True, True, False, False, True]
    with pytest.raises(money.MoneyError, match="'1e-3' is not a decimal number"):
        money.parse_decimal(pd.Series(["1e-3"]))


def test_half_up_rounds_ties_away_from_zero_to_the_minor_unit():
    cent = money.minor_unit("USD")
    assert money.round_half_up(np.array([103_425_000, 18_125_000, 20_025_000, -5_000, 4_999]), cent).tolist() == \
        [103_430_000, 18_130_000, 20_030_000, -10_000, 0]
    assert money.minor_unit("JPY") == 1_000_000 and money.minor_unit("KWD") == 1_000
    assert money.round_half_up(np.array([1_500_000, 2_499_999]), money.minor_unit("JPY")).tolist() == \
        [2_000_000, 2_000_000]


def test_conversion_rounds_once_after_fx_and_a_missing_rate_is_empty():
    config = TransformConfig.load()
    amounts = pd.Series([100_000_000, 12_345_000_000, 10_000, 5_000_000])  # 100 EUR, 12,345 JPY, 0.01, 5 XYZ
    currency = pd.Series(["EUR", "JPY", "GBP", "XYZ"])
    out = fx.to_reporting(amounts, currency, config)
    # 108.00 USD; 12,345 x 0.0067 = 82.7115 -> 82.71; 0.01 x 1.27 = 0.0127 -> 0.01; no rate -> NA
    assert out[:3].tolist() == [108_000_000, 82_710_000, 10_000] and pd.isna(out[3])
    with pytest.raises(money.MoneyError, match="more than 8 decimals"):
        fx.rate_units(Decimal("0.123456789"), "ABC")


def test_amounts_leave_as_exact_decimals():
    out = money.to_decimal(np.array([103_430_000, -1, 0]), np.array([True, True, False]))
    arr = pa.array(out.array)
    assert arr.type == pa.decimal128(20, 6)
    assert arr.to_pylist() == [Decimal("103.430000"), Decimal("-0.000001"), None]


def test_mul_div_is_exact_where_the_product_would_overflow():
    n = np.array([10**17 + 7, -(10**17 + 7), 5, 15])
    d = np.array([1_200_000, 1_200_000, 10, 10])
    exact = [int((Decimal(int(v)) * 1_000_000 / int(q)).to_integral_value("ROUND_HALF_UP")) for v, q in zip(n, d)]
    assert money.mul_div_half_up(n, 1_000_000, d).tolist() == exact
    assert exact[2:] == [500_000, 1_500_000]
