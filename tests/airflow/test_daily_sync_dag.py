"""recurly_daily_sync run in process with dag.test() against a sandbox the test starts."""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path

import pytest

import requests

from known_keys import REVOKED
from sandbox_sites import SANDBOX_KEYS

DAGS = Path(__file__).resolve().parents[2] / "dags"
DAG_ID = "recurly_daily_sync"


def _parse_daily_sync():
    """Parsed after the test's AIRFLOW_VAR_* are set (the DAG reads Variables at parse time)."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS))
    assert bag.import_errors == {}
    return bag.dags[DAG_ID]


def _xcom(run_id: str, task_id: str):
    from sqlalchemy import select

    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = session.scalars(
            select(XComModel).where(XComModel.dag_id == DAG_ID, XComModel.run_id == run_id,
                                    XComModel.task_id == task_id, XComModel.key == "return_value")
        ).one()
        return XComModel.deserialize_value(row)


def _xcoms_per_task_instance(run_id: str) -> set[int]:
    from sqlalchemy import func, select

    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        return set(session.scalars(
            select(func.count()).where(XComModel.dag_id == DAG_ID, XComModel.run_id == run_id)
            .group_by(XComModel.task_id, XComModel.map_index)))


def _accounts_per_site(sandbox_url: str) -> dict[str, int]:
    """What the sandbox itself says, asked directly (not through the code under test)."""
    counts = {}
    for site, key in SANDBOX_KEYS.items():
        response = requests.head(f"{sandbox_url}/accounts", auth=(key, ""), timeout=30,
                                 headers={"Accept": "application/vnd.recurly.v2021-02-25+json"})
        counts[site] = int(response.headers["Recurly-Total-Records"])
    return counts


def _task_states(dag_run) -> dict[str, str]:
    return {ti.task_id: str(getattr(ti.state, "value", ti.state)) for ti in dag_run.get_task_instances()}


def test_preflight_reaches_every_site_and_logs_the_window(airflow_db, run_settings, sandbox_url, capfd, caplog):
    dag = _parse_daily_sync().partial_subset(task_ids=["preflight"], include_upstream=False)
    # dag.test() makes a manual run at `logical_date`: it covers the day that ended then.
    dag_run = dag.test(logical_date=datetime(2025, 3, 9, tzinfo=timezone.utc))
    assert _task_states(dag_run) == {"preflight": "success"}
    expected = _accounts_per_site(sandbox_url)
    assert set(expected) == set(SANDBOX_KEYS) and all(expected.values())
    assert _xcom(dag_run.run_id, "preflight") == expected

    output = capfd.readouterr().out + caplog.text
    assert "Window (data interval): [2025-03-08 00:00:00+00:00, 2025-03-09 00:00:00+00:00)" in output
    assert f"Site acme via recurly_default: Recurly-Total-Records={expected['acme']}" in output
    for key in SANDBOX_KEYS.values():
        assert key not in output


def test_preflight_fails_naming_the_connection_never_the_key(airflow_db, run_settings, monkeypatch, capfd, caplog):
    wrong = REVOKED
    monkeypatch.setenv("AIRFLOW_CONN_RECURLY_DEFAULT",
                       run_settings.with_connection("recurly_default", password=json.dumps(wrong))
                       .connection("recurly_default").as_json())
    dag = _parse_daily_sync().partial_subset(task_ids=["preflight"], include_upstream=False)
    for task in dag.tasks:
        task.retries = 0  # fail at once instead of waiting for the retry delay
    dag_run = dag.test(logical_date=datetime(2025, 3, 8, tzinfo=timezone.utc))
    assert _task_states(dag_run) == {"preflight": "failed"}

    output = capfd.readouterr().out + caplog.text
    assert "connection 'recurly_default', site 'acme'" in output
    assert "the API key was refused (HTTP 401)" in output
    for key in wrong.values():
        assert key not in output


@pytest.mark.slow
def test_whole_daily_sync_succeeds(airflow_db, run_settings, sandbox_url, fake_destinations, capfd, caplog):
    """Every task of the DAG, extraction, transforms and the load included, for one data interval."""
    dag_run = _parse_daily_sync().test(logical_date=datetime(2025, 3, 10, tzinfo=timezone.utc))
    states = _task_states(dag_run)
    assert states and set(states.values()) == {"success"}, states
    assert _xcom(dag_run.run_id, "preflight") == _accounts_per_site(sandbox_url)
    assert _xcoms_per_task_instance(dag_run.run_id) == {1}  # Browse > XComs: one row per task at most
    output = capfd.readouterr().out + caplog.text
    # Each check says what it checked; the last task logs the run's table, as `make run` prints it.
    assert "check mrr_reconciles passed" in output and "rows of mrr_movements_monthly; 0 offending rows" in output
    assert "Run summary (records read per resource" in output and dag_run.run_id in output
    assert "accounts" in output.split("Run summary (", 1)[1].split("\n")[1]  # the table's header row
    import sqlalchemy as sa

    from recurly_elt.warehouse.engine import create_engine_from_url

    engine = create_engine_from_url(json.loads(os.environ["AIRFLOW_CONN_RECURLY_WAREHOUSE"])["host"])
    with engine.connect() as conn:
        logged = dict(conn.execute(sa.text("SELECT destination, status FROM load_run_log WHERE run_id = :r"),
                                   {"r": dag_run.run_id}).all())
    engine.dispose()
    assert logged == {name: "success" for name in fake_destinations}
    for name, server in fake_destinations.items():
        counts = _xcom(dag_run.run_id, f"load.{name}")
        received = requests.get(server.url + "/_fake/state", timeout=30).json()["server"]["requests"]
        assert counts["requests"] <= received, (name, counts)  # the fakes are shared by the session's tests


def test_load_is_skipped_when_the_destination_has_no_key(airflow_db, run_settings, monkeypatch):
    # A connection without a key, set in the environment: Airflow reads environment connections
    # before its metadata database, so whatever other tests of the session stored there for
    # recurly_braze does not matter (a missing connection is skipped the same way, by the same
    # NotConfigured; tests/destinations/test_bloomreach_delivery.py shows both messages).
    monkeypatch.setenv("AIRFLOW_CONN_RECURLY_BRAZE", json.dumps({"conn_type": "http", "host": "http://127.0.0.1:9"}))
    dag = _parse_daily_sync().partial_subset(task_ids=["load.braze"], include_upstream=False)
    dag_run = dag.test(logical_date=datetime(2025, 3, 11, tzinfo=timezone.utc))
    assert _task_states(dag_run) == {"load.braze": "skipped"}
