"""Every task of every DAG has an execution_timeout, taken from the Airflow configuration."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from recurly_elt.tasks.common import task_timeout

DAGS = Path(__file__).resolve().parents[2] / "dags"


def _dags():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS))
    assert bag.import_errors == {}
    return bag.dags


def test_every_task_times_out_after_the_configured_minutes(monkeypatch):
    monkeypatch.setenv("AIRFLOW__RECURLY_ELT__TASK_TIMEOUT_MINUTES", "45")
    monkeypatch.setenv("AIRFLOW_VAR_RECURLY_ELT_SITES", '["acme", "globex"]')
    dags = _dags()
    assert dags
    for dag in dags.values():
        for task in dag.tasks:
            assert task.execution_timeout == timedelta(minutes=45), (dag.dag_id, task.task_id)


def test_default_and_bad_timeouts():
    assert task_timeout("") == timedelta(minutes=240)
    assert task_timeout("90") == timedelta(minutes=90)
    for bad in ("0", "-5", "soon", "99999"):
        with pytest.raises(ValueError, match="task_timeout_minutes"):
            task_timeout(bad)


def test_check_quarantine_follows_every_extract_task_whatever_their_outcome(monkeypatch):
    monkeypatch.setenv("AIRFLOW_VAR_RECURLY_ELT_SITES", '["acme", "globex"]')
    for dag_id, dag in _dags().items():
        check = dag.get_task("check_quarantine")
        extracts = {t.task_id for t in dag.tasks if t.task_id.endswith(".extract")}
        assert extracts == {"extract_acme.extract", "extract_globex.extract"}, dag_id
        assert check.upstream_task_ids == extracts and check.trigger_rule == "all_done" and check.retries == 0
        # the transform does not wait for it: a grown quarantine fails the run, not the marts; only
        # the run's last task, run_summary (trigger rule all_done), comes after it
        assert {t.task_id for t in dag.tasks if "check_quarantine" in t.upstream_task_ids} == {"run_summary"}
