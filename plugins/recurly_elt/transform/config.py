"""The transform's settings: the YAML files of include/mappings (fx, mrr, bands, health).

They are read once per run into one `TransformConfig`. The folder is <repo>/include/mappings, or
the folder named by RECURLY_ELT_MAPPINGS_DIR (how an Airflow deployment points at its own copy).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path

import yaml

DEFAULT_MAPPINGS_DIR = Path(__file__).resolve().parents[3] / "include" / "mappings"


def mappings_dir() -> Path:
    return Path(os.environ.get("RECURLY_ELT_MAPPINGS_DIR") or DEFAULT_MAPPINGS_DIR)


def _load(folder: Path, name: str) -> dict:
    path = folder / name
    try:
        with open(path, encoding="utf-8") as fh:
            return yaml.safe_load(fh) or {}
    except FileNotFoundError:
        raise FileNotFoundError(f"transform mapping {name} not found in {folder}") from None


def _decimal(value, what: str) -> Decimal:
    """A number of a mapping file as the decimal it is written as (YAML's float repr is its text)."""
    try:
        out = Decimal(str(value))
    except InvalidOperation:
        raise ValueError(f"{what}: {value!r} is not a number") from None
    if not out.is_finite() or out <= 0:
        raise ValueError(f"{what}: {value!r} must be a positive number")
    return out


@dataclass(frozen=True)
class TransformConfig:
    reporting_currency: str
    fx_rates: dict[str, Decimal]      # the decimals the file writes (never through a float)
    days_per_month: Decimal
    recurring_origins: tuple[str, ...]
    excluded_invoice_states: tuple[str, ...]
    bands: dict[str, list[tuple[str, float]]]
    health: dict

    @classmethod
    def load(cls, folder: str | Path | None = None) -> "TransformConfig":
        folder = Path(folder) if folder else mappings_dir()
        fx, mrr = _load(folder, "fx.yaml"), _load(folder, "mrr.yaml")
        bands, health = _load(folder, "bands.yaml"), _load(folder, "health.yaml")
        return cls(
            reporting_currency=str(fx["reporting_currency"]).upper(),
            fx_rates={str(k).upper(): _decimal(v, f"fx.yaml: rate of {k}") for k, v in (fx.get("rates") or {}).items()},
            days_per_month=_decimal(mrr.get("days_per_month", 30), "mrr.yaml: days_per_month"),
            recurring_origins=tuple(mrr.get("recurring_origins", ("plan", "add_on"))),
            excluded_invoice_states=tuple(mrr.get("excluded_invoice_states", ("voided", "failed"))),
            bands={k: [(str(label), float(low)) for label, low in v] for k, v in bands.items()},
            health=health,
        )
