"""The first `make run` on an empty warehouse imports the history before the daily backfill.

That is how the package is meant to be installed: one `recurly_one_time_import` of everything
updated before the first daily window, then daily syncs. Without it the three daily runs would
see only three days of changes (no plan created a year ago, no subscription untouched in those
days), and every figure computed from staging would be wrong. The import covers updated_at
before D-3, the backfill [D-3, D): together, the whole history exactly once.

Skipped as soon as the warehouse holds staged accounts, so later runs are daily syncs only.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from recurly_elt.local.backfill import BackfillWindow

IMPORT_DAG_ID = "recurly_one_time_import"
ACCOUNTS_TABLE = "stg_accounts"


def warehouse_is_empty(url: Any) -> bool:
    """True when the warehouse has no staged account yet (no file, no table, or no row)."""
    import sqlalchemy as sa

    from recurly_elt.warehouse.engine import create_engine_from_url, normalize_url

    parsed = normalize_url(url)
    if parsed.get_backend_name() == "sqlite" and (not parsed.database or not Path(parsed.database).exists()):
        return True
    engine = create_engine_from_url(parsed)
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table(ACCOUNTS_TABLE):
                return True
            return conn.execute(sa.select(sa.func.count()).select_from(sa.table(ACCOUNTS_TABLE))).scalar() == 0
    finally:
        engine.dispose()


def import_conf(window: BackfillWindow) -> dict[str, str]:
    """The one-time import's Params: everything updated before the backfill's first day."""
    return {"end_date": window.start.date().isoformat()}


def trigger_command(airflow_bin: str, window: BackfillWindow, now: datetime | None = None) -> tuple[str, list[str]]:
    """(run id, `airflow dags trigger` command) of the import run."""
    now = now or datetime.now(timezone.utc)
    run_id = f"local_import__{now:%Y-%m-%dT%H:%M:%S}"
    command = [
        airflow_bin, "dags", "trigger", IMPORT_DAG_ID,
        "--run-id", run_id,
        "--conf", json.dumps(import_conf(window)),
    ]
    return run_id, command
