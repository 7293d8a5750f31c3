"""The daily sync's date Params apply to manual runs only: a backfill with them set still reads
each run's own day (Airflow's real backfill planning creates the runs)."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from recurly_elt.tasks.extract import ExtractConfigError, window_from_context

DAGS = Path(__file__).resolve().parents[2] / "dags"
PARAMS = {"start_date": "2025-01-01", "end_date": "2025-02-01"}


@pytest.fixture(scope="module")
def daily_sync_in_db(airflow_db):
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db

    DagBundlesManager().sync_bundles_to_db()
    sync_bag_to_db(DagBag(dag_folder=str(DAGS)), "dags-folder", None)
    return "recurly_daily_sync"


def _context(run, params):
    return {"params": params, "dag_run": run, "data_interval_start": run.data_interval_start,
            "data_interval_end": run.data_interval_end}


def test_a_backfill_with_the_params_set_reads_each_runs_own_day(daily_sync_in_db, caplog):
    from sqlalchemy import select

    from airflow.models.backfill import _create_backfill
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    backfill = _create_backfill(dag_id=daily_sync_in_db, from_date=datetime(2025, 3, 1, tzinfo=timezone.utc),
                                to_date=datetime(2025, 3, 7, tzinfo=timezone.utc), max_active_runs=1,
                                reverse=False, dag_run_conf=dict(PARAMS), triggering_user_name="test")
    with create_session() as session:
        runs = session.scalars(select(DagRun).where(DagRun.backfill_id == backfill.id)
                               .order_by(DagRun.logical_date)).all()
        session.expunge_all()
    assert len(runs) == 7 and all(r.conf == PARAMS for r in runs)
    caplog.set_level(logging.WARNING)
    windows = [window_from_context(_context(run, {**PARAMS, **run.conf}), "daily") for run in runs]
    assert [(w.start, w.end) for w in windows] == [
        (datetime(2025, 3, d), datetime(2025, 3, d) + timedelta(days=1)) for d in range(1, 8)]
    assert caplog.text.count("ignored: this backfill run reads its data interval") == 7


class _Run:
    def __init__(self, run_type):
        self.run_type = run_type


def test_manual_runs_use_the_params_and_need_them_without_an_interval():
    day = datetime(2025, 3, 9, tzinfo=timezone.utc)
    manual = {"params": PARAMS, "dag_run": _Run("manual")}
    assert window_from_context(manual, "daily").start == datetime(2025, 1, 1)
    with_interval = {**manual, "data_interval_start": day - timedelta(days=1), "data_interval_end": day}
    assert window_from_context(with_interval, "daily").end == datetime(2025, 2, 1)
    with pytest.raises(ExtractConfigError, match="set Params start_date and end_date"):
        window_from_context({"params": {}, "dag_run": _Run("manual")}, "daily")
    scheduled = {"params": PARAMS, "dag_run": _Run("scheduled"), "data_interval_start": day - timedelta(days=1),
                 "data_interval_end": day}
    assert window_from_context(scheduled, "daily").start == datetime(2025, 3, 8)
    with pytest.raises(ExtractConfigError, match="apply to manual runs only"):
        window_from_context({"params": PARAMS, "dag_run": _Run("asset_triggered")}, "daily")
