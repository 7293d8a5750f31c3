"""What the Airflow UI shows of the DAGs: descriptions, the import form's choices, one XCom at most
per task, a last task logging the run's summary."""

from __future__ import annotations

import os
from pathlib import Path
from unittest import mock

import pytest

ROOT = Path(__file__).resolve().parents[2]
SITES = ["acme", "globex"]


@pytest.fixture(scope="module")
def dags():
    from airflow.dag_processing.dagbag import DagBag

    with mock.patch.dict(os.environ, {"AIRFLOW_VAR_RECURLY_ELT_SITES": '["acme", "globex"]'}):
        bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert not bag.import_errors
    return bag.dags


def test_every_dag_has_a_one_line_description(dags):
    for dag_id, dag in dags.items():
        assert dag.description and "\n" not in dag.description and len(dag.description) <= 120, dag_id


def validated(dag, conf: dict):
    """The run's params as the API server checks them when a run is triggered (serialized DAG)."""
    from airflow.serialization.serialized_objects import DagSerialization

    served = DagSerialization.from_dict(DagSerialization.to_dict(dag))
    return served.params.deep_merge(conf).validate()


def test_the_import_form_offers_the_sites_and_resources_and_needs_neither(dags):
    from recurly_elt.recurly.resources import RESOURCES

    params = dags["recurly_one_time_import"].params
    for name, choices in (("sites", SITES), ("resources", list(RESOURCES))):
        schema = params.get_param(name).schema
        # The trigger form draws a multi-select for an array with examples, optional when null is allowed.
        assert schema["type"] == ["array", "null"] and schema["examples"] == choices, name
        assert schema["items"]["enum"] == choices
    dag = dags["recurly_one_time_import"]
    assert validated(dag, {})["sites"] is None
    assert validated(dag, {"sites": [], "resources": None})["sites"] == []
    assert validated(dag, {"sites": ["globex"], "resources": ["accounts", "plans"]})["sites"] == ["globex"]


@pytest.mark.parametrize(("name", "value"), [("sites", ["acmee"]), ("resources", ["acounts"]),
                                             ("sites", ["acme", "acme"]), ("resources", "accounts")])
def test_an_unknown_or_malformed_choice_is_refused_before_the_run(dags, name, value):
    from airflow.exceptions import ParamValidationError

    with pytest.raises(ParamValidationError, match=name):
        validated(dags["recurly_one_time_import"], {name: value})


def test_no_task_expands_its_return_value_into_many_xcoms(dags):
    for dag_id, dag in dags.items():
        for task in dag.tasks:
            assert not getattr(task, "multiple_outputs", False), f"{dag_id}.{task.task_id}"


def test_each_run_ends_with_the_summary_task_whatever_happened(dags):
    for dag_id, dag in dags.items():
        summary = dag.get_task("run_summary")
        assert summary.trigger_rule == "all_done"
        assert not summary.downstream_task_ids
        assert dag.tasks and all(t.task_id == "run_summary" or "run_summary" in
                                 {d.task_id for d in t.get_flat_relatives(upstream=False)} for t in dag.tasks), dag_id
