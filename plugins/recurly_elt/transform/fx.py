"""Conversion to the reporting currency with the rates of include/mappings/fx.yaml, in exact money.

A rate is read as the decimal the file writes (1.08, 0.0067: at most RATE_DIGITS decimals) and
applied in integer arithmetic to amounts already rounded to their currency's minor unit; the result
is rounded half up to the reporting currency's minor unit (transform/money.py).

A row whose currency has no rate is not an error: its reporting amount is left empty and the row
is returned in a quarantine frame with the reason, so the run goes on and the count is visible.
"""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pandas as pd

from recurly_elt.transform import money
from recurly_elt.transform.config import TransformConfig

RATE_DIGITS = 8
RATE_SCALE = 10**RATE_DIGITS


def rate_units(rate: Decimal, currency: str) -> int:
    """A rate as an integer count of 10^-RATE_DIGITS."""
    scaled = Decimal(rate) * RATE_SCALE
    if scaled != scaled.to_integral_value():
        raise money.MoneyError(f"fx.yaml: the rate of {currency} ({rate}) has more than {RATE_DIGITS} decimals")
    return int(scaled)


def _per_currency(currency: pd.Series, config: TransformConfig, value) -> np.ndarray:
    """value(code) per distinct currency (a handful), spread to the rows; -1 where there is none."""
    codes, uniques = pd.factorize(currency)
    table = np.array([value(str(c).upper()) for c in uniques] + [-1], dtype=np.int64)
    return table[np.where(codes >= 0, codes, len(uniques))]


def rates_for(currency: pd.Series, config: TransformConfig) -> np.ndarray:
    """Each row's rate in units of 10^-RATE_DIGITS (-1 where fx.yaml has none)."""
    return _per_currency(currency, config, lambda c: rate_units(config.fx_rates[c], c) if c in config.fx_rates else -1)


def to_reporting(amount: pd.Series | np.ndarray, currency: pd.Series, config: TransformConfig) -> pd.Series:
    """Amounts in micro-units of their currency (rounded to its minor unit) converted and rounded
    half up to the reporting currency's minor unit, in micro-units; NA where the rate is missing."""
    micro = np.asarray(amount, dtype=np.int64)
    rate = rates_for(currency, config)
    step = money.minor_units(currency)
    target = money.minor_unit(config.reporting_currency)
    minor = micro // step  # exact: the amount is a whole number of its minor units
    if len(micro) and np.abs(minor).max() >= money.BOUND_RATE:
        raise money.MoneyError(f"an amount of {np.abs(micro).max() / money.MICRO:,.2f} is too large to convert exactly")
    # amount x rate in reporting minor units = minor x step x rate / (RATE_SCALE x target)
    denominator = RATE_SCALE * target // step
    converted = money.divide_half_up(minor * np.maximum(rate, 0), denominator) * target
    return pd.Series(pd.arrays.IntegerArray(np.where(rate >= 0, converted, 0), rate < 0),
                     index=currency.index if isinstance(currency, pd.Series) else None)


def missing_rate_reasons(currency: pd.Series, config: TransformConfig) -> pd.Series:
    """Per row: the quarantine reason, or NaN when the rate exists."""
    missing = pd.Series(rates_for(currency, config) < 0, index=currency.index)
    shown = currency.fillna("<none>").astype(str)
    reasons = "no FX rate from " + shown + " to " + config.reporting_currency + " in fx.yaml"
    return reasons.where(missing, np.nan)
