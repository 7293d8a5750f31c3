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
