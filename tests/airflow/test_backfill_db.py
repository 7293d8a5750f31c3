"""The backfill helpers against a real metadata database: find, cancel, parse status, progress."""

from __future__ import annotations

from datetime import date, datetime, timezone
from pathlib import Path

import pytest

from recurly_elt.local import backfill as bf

DAGS = Path(__file__).resolve().parents[2] / "dags"
WINDOW = bf.BackfillWindow(today=date(2024, 6, 10), days=3)


@pytest.fixture(scope="module")
def dags_in_db(airflow_db):
    """The project's DAGs written to the metadata database, as the DAG processor would."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db

    DagBundlesManager().sync_bundles_to_db()
    sync_bag_to_db(DagBag(dag_folder=str(DAGS)), "dags-folder", None)
    return datetime.now(timezone.utc)


def test_parse_status(dags_in_db):
    assert bf.dag_parse_status() == (True, {})
    # parsed before this instant, not since: a fresh parse is still to come
    assert bf.dag_parse_status(parsed_since=datetime.now(timezone.utc))[0] is False
    assert bf.dag_parse_status("no_such_dag")[0] is False


def test_create_find_progress_and_cancel(dags_in_db):
    from airflow.models.backfill import _create_backfill

    assert bf.active_backfill() is None
    backfill = _create_backfill(dag_id=bf.DAG_ID, from_date=WINDOW.from_date, to_date=WINDOW.to_date,
                                max_active_runs=1, reverse=False, dag_run_conf=None, triggering_user_name=None,
                                reprocess_behavior=None)
    active = bf.active_backfill()
    assert active[0] == backfill.id == bf.latest_backfill_id()
    assert (bf.as_utc(active[1]), bf.as_utc(active[2])) == (WINDOW.from_date, WINDOW.to_date)

    progress = bf.read_progress(WINDOW, backfill.id)
    assert progress.runs == {"queued": 3} and not progress.finished

    other = bf.BackfillWindow(today=date(2024, 6, 20), days=3)
    assert bf.cancel_backfill_of(other) is None  # another window's backfill is left alone
    assert bf.cancel_backfill_of(WINDOW) == backfill.id
    assert bf.active_backfill() is None
    progress = bf.read_progress(WINDOW, backfill.id)
    assert progress.runs == {"failed": 3} and progress.backfill_complete and progress.finished


def test_pause_and_unpause(dags_in_db):
    from sqlalchemy import select

    from airflow.models.dag import DagModel
    from airflow.utils.session import create_session

    def paused():
        with create_session() as session:
            return session.scalar(select(DagModel.is_paused).where(DagModel.dag_id == bf.DAG_ID))

    bf.set_paused(True)
    assert paused() is True
    bf.set_paused(False)
    assert paused() is False
