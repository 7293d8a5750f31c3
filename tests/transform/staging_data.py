"""Test data for the transform: a sandbox simulation, or hand-made objects, loaded into staging."""

from __future__ import annotations

from datetime import date, timedelta

import sqlalchemy as sa

from recurly_elt.extract.completion import SANDBOX_TO_STAGING, as_extracted
from recurly_elt.staging.load import upsert_records

# The sandbox's default dataset (seed and size of `recurly-elt sandbox serve`), with a fixed clock.
DEFAULT_SEED, DEFAULT_ACCOUNTS = 42, 500
DEFAULT_UNTIL = date(2026, 1, 1)
DEFAULT_START = DEFAULT_UNTIL - timedelta(days=365)


def simulation(accounts: int = DEFAULT_ACCOUNTS, seed: int = DEFAULT_SEED, until: date = DEFAULT_UNTIL,
               site: str = "sandbox"):
    from recurly_elt.sandbox.simulation import SiteSimulation

    return SiteSimulation(subdomain=site, seed=seed, accounts=accounts, start_date=until - timedelta(days=365),
                          until=until)


def load_objects(engine: sa.Engine, site: str, objects: dict[str, dict | list],
                 applied: dict[str, tuple[str, ...]] | None = None) -> None:
    """Upsert {sandbox resource name: {id: object} or [objects]} into staging.

    Coupon redemptions are no staging table: with `applied` (a simulation's invoice_redemptions),
    the invoices carry them as the extraction stages them (`as_extracted`); without, they are left
    out."""
    if applied is not None:
        staged = as_extracted(objects, applied)
    else:
        staged = {SANDBOX_TO_STAGING.get(name, name): list(objs.values()) if isinstance(objs, dict) else list(objs)
                  for name, objs in objects.items() if name != "coupon_redemptions"}
    for name, values in staged.items():
        if values:
            upsert_records(engine, name, site, values)
