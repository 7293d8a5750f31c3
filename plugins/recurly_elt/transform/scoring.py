"""The health score and band of include/mappings/health.yaml, the Totango way, with risk caps.

    rules = HealthRules.from_config(config.health)      # validated once per run
    scored = score(health_rows, rules)                   # one row per account: see `score`

1. Who is scored. An account whose status is in `unscored` (by default churned, inactive, never
   subscribed, trialing) has no score and no place on the Good/Average/Poor scale: its band is the
   label the file gives (e.g. "Churned", "Not a customer"). A customer-success manager acts on the
   scale; an account with nothing to measure must not look healthy on it.
2. Metric points. Each metric is Good / Average / Poor by its thresholds (`lower` or `higher` is
   better). A metric without a value is read as its `missing` says: `exclude` (left out, the other
   weights re-normalised: right only where "no value" carries no risk, such as an MRR trend of an
   account that had no MRR 30 days ago), or `good` / `average` / `poor`.
3. Dimension score = weighted mean of its metrics' points; the raw score = weighted mean of the
   dimensions (0-100, one decimal). Both stay visible per account (`<dimension>_score`,
   `health_score_uncapped`).
4. Risk caps. Each flag of `caps` that is true on the account caps its band (by default an open
   past-due invoice makes it Poor; a failed payment in 30 days, a scheduled cancellation or a card
   that expires before the next renewal keep it out of Good); `any_poor_metric_is_poor: true` adds
   Totango's rule that one Poor metric makes the account Poor. A capped score is lowered to the top
   of the capped band, so score and band always agree; `health_capped_by` names the caps that
   lowered the band.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from recurly_elt.transform.tables import DIMENSIONS

MISSING = ("exclude", "good", "average", "poor")


class HealthConfigError(ValueError):
    """health.yaml says something the scorer cannot apply (the message names the entry)."""


@dataclass(frozen=True)
class Metric:
    name: str
    weight: float
    lower_is_better: bool
    good: float
    average: float
    missing: str  # one of MISSING


@dataclass(frozen=True)
class Dimension:
    name: str
    weight: float
    metrics: tuple[Metric, ...]


@dataclass(frozen=True)
class HealthRules:
    grades: dict[str, float]                  # points of good / average / poor
    dimensions: tuple[Dimension, ...]
    bands: tuple[tuple[str, float], ...]      # (label, lowest score), ascending: worst band first
    unscored: dict[str, str]                  # account_status -> its band label
    caps: dict[str, str]                      # flag column -> the best band it allows
    any_poor_metric_is_poor: bool

    @classmethod
    def from_config(cls, health: dict) -> "HealthRules":
        def need(mapping: dict, key: str, where: str):
            if not isinstance(mapping, dict) or key not in mapping:
                raise HealthConfigError(f"health.yaml: {where} needs `{key}`")
            return mapping[key]

        grades = {k: float(need(need(health, "grades", "the file"), k, "grades")) for k in ("good", "average", "poor")}
        dims = []
        for dname, dim in (need(health, "dimensions", "the file") or {}).items():
            if dname not in DIMENSIONS:
                raise HealthConfigError(f"health.yaml: dimension {dname!r} has no score column; "
                                        f"known dimensions: {', '.join(DIMENSIONS)}")
            metrics = []
            for mname, rule in (need(dim, "metrics", f"dimension {dname}") or {}).items():
                where = f"metric {dname}.{mname}"
                if ("lower" in rule) == ("higher" in rule):
                    raise HealthConfigError(f"health.yaml: {where} needs exactly one of `lower` or `higher`")
                th = rule["lower"] if "lower" in rule else rule["higher"]
                missing = str(rule.get("missing", "exclude"))
                if missing not in MISSING:
                    raise HealthConfigError(f"health.yaml: {where}: missing must be one of {', '.join(MISSING)}, "
                                            f"got {missing!r}")
                metrics.append(Metric(mname, float(need(rule, "weight", where)), "lower" in rule,
                                      float(need(th, "good", where)), float(need(th, "average", where)), missing))
            dims.append(Dimension(dname, float(need(dim, "weight", f"dimension {dname}")), tuple(metrics)))
        bands = tuple(sorted(((str(label), float(low)) for label, low in need(health, "bands", "the file")),
                             key=lambda b: b[1]))
        labels = {b[0] for b in bands}
        caps = {str(k): str(v) for k, v in (health.get("caps") or {}).items()}
        for flag, band in caps.items():
            if band not in labels:
                raise HealthConfigError(f"health.yaml: cap {flag}: {band!r} is not a band ({', '.join(sorted(labels))})")
        unscored = {str(k): str(v) for k, v in (health.get("unscored") or {}).items()}
        return cls(grades, tuple(dims), bands, unscored, caps, bool(health.get("any_poor_metric_is_poor", False)))

    @property
    def metric_names(self) -> list[str]:
        return [m.name for d in self.dimensions for m in d.metrics]


def grade(values: pd.Series, metric: Metric, grades: dict[str, float]) -> np.ndarray:
    """Points per value; a missing value gets the points `metric.missing` says (NaN: excluded)."""
    v = pd.to_numeric(values, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    if metric.lower_is_better:
        good, avg = v <= metric.good, v <= metric.average
    else:
        good, avg = v >= metric.good, v >= metric.average
    pts = np.select([good, avg], [grades["good"], grades["average"]], default=grades["poor"]).astype("float64")
    fill = np.nan if metric.missing == "exclude" else grades[metric.missing]
    return np.where(np.isnan(v), fill, pts)


def _weighted(parts: list[tuple[float, np.ndarray]], n: int) -> np.ndarray:
    """Weighted mean of the parts present per row (weights re-normalised over the present ones);
    NaN where none is present."""
    num, den = np.zeros(n), np.zeros(n)
    for weight, values in parts:
        present = ~np.isnan(values)
        num += np.where(present, values * weight, 0.0)
        den += np.where(present, weight, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.round(np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan), 1)


def score(rows: pd.DataFrame, rules: HealthRules) -> pd.DataFrame:
    """Per row of `rows` (the metric columns, the cap flags and `account_status`):
    `<dimension>_score` for each dimension of the file, health_score_uncapped, health_score,
    health_band, health_capped_by (the caps that lowered the band, ", "-joined; None when none)."""
    n = len(rows)
    missing = [c for c in [*rules.metric_names, *rules.caps, "account_status"] if c not in rows.columns]
    if missing:
        raise HealthConfigError(f"health.yaml names columns the health rows do not have: {', '.join(missing)}")
    out = pd.DataFrame(index=rows.index)
    poor_metric = np.zeros(n, dtype=bool)
    dims = []
    for dim in rules.dimensions:
        parts = []
        for m in dim.metrics:
            pts = grade(rows[m.name], m, rules.grades)
            poor_metric |= pts == rules.grades["poor"]
            parts.append((m.weight, pts))
        values = _weighted(parts, n)
        out[f"{dim.name}_score"] = values
        dims.append((dim.weight, values))
    raw = _weighted(dims, n)

    bounds = np.array([b[1] for b in rules.bands])
    rank = np.where(np.isnan(raw), -1, np.clip(np.searchsorted(bounds, np.nan_to_num(raw), side="right") - 1,
                                               0, len(bounds) - 1))
    best = {label: i for i, (label, _) in enumerate(rules.bands)}
    cap_rank = np.full(n, len(bounds) - 1)
    capped_by = [[] for _ in range(n)]
    caps = [(flag, best[band]) for flag, band in rules.caps.items()]
    if rules.any_poor_metric_is_poor:
        caps.append(("any_poor_metric", 0))
    for flag, limit in caps:
        on = poor_metric if flag == "any_poor_metric" else rows[flag].fillna(False).astype(bool).to_numpy()
        for i in np.flatnonzero(on & (rank > limit)):
            capped_by[i].append(flag.removeprefix("alert_"))
        cap_rank = np.where(on, np.minimum(cap_rank, limit), cap_rank)
    final = np.where(rank < 0, -1, np.minimum(rank, cap_rank))
    # A capped score is lowered to the top of its band: just under the next band's lowest score.
    tops = np.append(bounds[1:] - 1.0, np.inf)
    capped_score = np.where(final >= 0, np.minimum(raw, tops[np.maximum(final, 0)]), np.nan)

    status = rows["account_status"].astype(object).to_numpy()
    unscored = pd.Series(status).map(rules.unscored).to_numpy()
    is_unscored = pd.notna(unscored)
    labels = np.array([b[0] for b in rules.bands] + [None], dtype=object)
    out["health_score_uncapped"] = np.where(is_unscored, np.nan, raw)
    out["health_score"] = np.where(is_unscored, np.nan, capped_score)
    out["health_band"] = np.where(is_unscored, unscored, labels[final])
    out["health_capped_by"] = [None if u or not c else ", ".join(c) for u, c in zip(is_unscored, capped_by)]
    for dim in rules.dimensions:
        out.loc[is_unscored, f"{dim.name}_score"] = np.nan
    return out
