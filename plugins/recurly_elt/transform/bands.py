"""Label values with the bands of include/mappings/bands.yaml (MRR, quantity, tenure)."""

from __future__ import annotations

import numpy as np
import pandas as pd


def label(values: pd.Series, bands: list[tuple[str, float]]) -> pd.Series:
    """The label of the band each value falls in ([lower bound, next band's bound)); NaN stays NaN,
    values under the first bound get the first band."""
    labels = np.array([b[0] for b in bands], dtype=object)
    bounds = np.array([b[1] for b in bands], dtype="float64")
    v = values.to_numpy(dtype="float64", na_value=np.nan)
    idx = np.clip(np.searchsorted(bounds, v, side="right") - 1, 0, len(bands) - 1)
    out = pd.Series(labels[idx], index=values.index, dtype=object)
    return out.where(~np.isnan(v), None)
