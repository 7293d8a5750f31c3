"""Conversion to the reporting currency with the rates of include/mappings/fx.yaml.

A row whose currency has no rate is not an error: its reporting amount is left empty and the row
is returned in a quarantine frame with the reason, so the run goes on and the count is visible.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from recurly_elt.transform.config import TransformConfig


def rates_for(currency: pd.Series, config: TransformConfig) -> pd.Series:
    """The rate of each row's currency (NaN where fx.yaml has none). Looked up once per distinct
    currency (a handful), not once per row."""
    codes, uniques = pd.factorize(currency)
    rates = pd.Series(uniques).astype(str).str.upper().map(config.fx_rates).to_numpy(dtype="float64")
    return pd.Series(np.where(codes >= 0, rates[codes], np.nan) if len(rates) else np.nan,
                     index=currency.index, dtype="float64")


def to_reporting(amount: pd.Series, currency: pd.Series, config: TransformConfig) -> pd.Series:
    return (amount * rates_for(currency, config)).round(2)


def missing_rate_reasons(currency: pd.Series, config: TransformConfig) -> pd.Series:
    """Per row: the quarantine reason, or NaN when the rate exists."""
    missing = rates_for(currency, config).isna()
    shown = currency.fillna("<none>").astype(str)
    reasons = "no FX rate from " + shown + " to " + config.reporting_currency + " in fx.yaml"
    return reasons.where(missing, np.nan)
