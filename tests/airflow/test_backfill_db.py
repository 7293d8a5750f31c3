"""The backfill helpers against a real metadata database, all through Airflow's REST API (its own
app, in process): parse status, import errors, runs, progress, failed tasks; finding, cancelling
and pausing backfills."""

from __future__ import annotations

from datetime import date, datetime, timezone
from pathlib import Path

import pytest

from recurly_elt.local import backfill as bf
from recurly_elt.local.summary import collect_runs

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


@pytest.fixture(scope="module")
def api(dags_in_db):
    """The REST client `make run` uses, against Airflow's own API app, with a JWT of its auth manager."""
    from fastapi.testclient import TestClient

    from airflow.api_fastapi.app import create_app, create_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    from recurly_elt.local.airflow_api import AirflowApi

    token = create_auth_manager().generate_jwt(SimpleAuthManagerUser(username="admin", role="admin"))
    return AirflowApi("", lambda: token, TestClient(create_app()))


def test_parse_status(api):
    assert bf.dag_parse_status(api) == (True, {})
    # parsed before this instant, not since: a fresh parse is still to come
    assert bf.dag_parse_status(api, parsed_since=datetime.now(timezone.utc))[0] is False
    assert bf.dag_parse_status(api, "no_such_dag")[0] is False


def test_create_find_progress_and_cancel(api):
    from airflow.models.backfill import _create_backfill

    assert api.active_backfill(bf.DAG_ID) is None
    backfill = _create_backfill(dag_id=bf.DAG_ID, from_date=WINDOW.from_date, to_date=WINDOW.to_date,
                                max_active_runs=1, reverse=False, dag_run_conf=None, triggering_user_name=None,
                                reprocess_behavior=None)
    active = api.active_backfill(bf.DAG_ID)
    assert active[0] == backfill.id == api.latest_backfill_id(bf.DAG_ID)
    assert (bf.as_utc(active[1]), bf.as_utc(active[2])) == (WINDOW.from_date, WINDOW.to_date)

    progress = bf.read_progress(api, WINDOW, backfill.id)
    assert progress.runs == {"queued": 3} and not progress.finished

    other = bf.BackfillWindow(today=date(2024, 6, 20), days=3)
    assert bf.cancel_backfill_of(api, other) is None  # another window's backfill is left alone
    assert bf.cancel_backfill_of(api, WINDOW) == backfill.id
    assert api.active_backfill(bf.DAG_ID) is None
    progress = bf.read_progress(api, WINDOW, backfill.id)
    assert progress.runs == {"failed": 3} and progress.backfill_complete and progress.finished

    runs = collect_runs(api, bf.DAG_ID, WINDOW.from_date, WINDOW.to_date)
    assert [r.interval_start for r in runs] == [start for start, _ in WINDOW.intervals()]
    assert {r.state for r in runs} == {"failed"}
    assert collect_runs(api, bf.DAG_ID, WINDOW.end, WINDOW.end) == []


def test_pause_and_unpause(api):
    api.set_paused(bf.DAG_ID, True)
    assert api.is_paused(bf.DAG_ID) is True
    api.set_paused(bf.DAG_ID, False)
    assert api.is_paused(bf.DAG_ID) is False


def test_an_api_error_names_the_call_and_airflows_detail(api):
    from recurly_elt.local.airflow_api import AirflowApiError

    with pytest.raises(AirflowApiError, match=r"PATCH /api/v2/dags/no_such_dag: HTTP 404"):
        api.set_paused("no_such_dag", True)
