"""When `make run` imports the history first, and what it asks the one-time import for."""

from __future__ import annotations

import json
from datetime import date, datetime, timezone

import sqlalchemy as sa

from recurly_elt.local.backfill import BackfillWindow
from recurly_elt.local.initial_import import IMPORT_DAG_ID, import_conf, trigger_command, warehouse_is_empty


def test_warehouse_is_empty_until_accounts_are_staged(tmp_path):
    url = f"sqlite:///{tmp_path / 'w.db'}"
    assert warehouse_is_empty(url)
    assert not (tmp_path / "w.db").exists()  # asking must not create the file
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE other (x INT)")
    assert warehouse_is_empty(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE stg_accounts (site TEXT, id TEXT)")
    assert warehouse_is_empty(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO stg_accounts VALUES ('acme', 'a1')")
    assert not warehouse_is_empty(url)


def test_the_import_ends_where_the_backfill_starts():
    window = BackfillWindow(today=date(2025, 3, 10), days=3)
    assert import_conf(window) == {"end_date": "2025-03-07"}
    run_id, command = trigger_command("airflow", window, now=datetime(2025, 3, 10, 8, 30, tzinfo=timezone.utc))
    assert run_id == "local_import__2025-03-10T08:30:00"
    assert command[:4] == ["airflow", "dags", "trigger", IMPORT_DAG_ID]
    assert command[command.index("--run-id") + 1] == run_id
    assert json.loads(command[command.index("--conf") + 1]) == {"end_date": "2025-03-07"}
