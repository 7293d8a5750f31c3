"""Load task callables: one task per destination mapping, after the transform, in its own pool.

Imported by DAG files at parse time: wiring reads the mapping files
(include/mappings/destinations/*.yaml, a few small YAML documents) for their names and pools, as
the pool is a per-destination setting there; the engine, adapters and SQLAlchemy load inside the
task.

A destination whose connection is missing or has no key is skipped with that reason. Params (both
DAGs): `dry_run` (count and sample, send nothing); the one-time import also has `destinations`
(empty = every configured one), `load_mode` (the mapping's own mode when null) and
`backfill_events` (send events older than the mapping's age limit, with the API's backfill marker).
XCom: the run's counts only.
"""

from __future__ import annotations

import logging
from typing import Any

from recurly_elt.destinations.mapping import destination_names, load_mapping
from recurly_elt.tasks.common import WAREHOUSE_CONN_ID

log = logging.getLogger(__name__)
# The transform publishes this Asset when the marts are rebuilt; the load consumes them.
MARTS_ASSET_NAME = "recurly_elt_marts"


def deliver_destination(name: str, dag_mode: str) -> dict[str, Any]:
    """Deliver one destination for the current DAG run; returns its counts (XCom)."""
    from airflow.sdk import get_current_context
    from airflow.sdk.exceptions import AirflowSkipException

    from recurly_elt.destinations.adapter import load_adapter
    from recurly_elt.destinations.connection import NotConfigured, transport_for
    from recurly_elt.destinations.engine import DeliveryIncomplete, deliver
    from recurly_elt.warehouse.engine import engine_for_connection

    context = get_current_context()
    params = context.get("params") or {}
    chosen = params.get("destinations") or []
    if chosen and name not in chosen:
        raise AirflowSkipException(f"destination {name} is not among the chosen destinations {chosen}")
    mapping = load_mapping(name)
    adapter = load_adapter(mapping)
    dry_run = bool(params.get("dry_run"))
    try:
        transport = transport_for(mapping, adapter)
    except NotConfigured as exc:
        if not dry_run:
            raise AirflowSkipException(str(exc)) from None
        log.info("%s; the dry run goes on without it", exc)
        transport = None
    mode = (params.get("load_mode") if dag_mode == "import" else None) or mapping.mode
    backfill = bool(params.get("backfill_events")) if dag_mode == "import" else False
    engine = engine_for_connection(WAREHOUSE_CONN_ID)
    try:
        log.info("Delivering %s (mode %s%s%s) from %s", name, mode, ", dry run" if dry_run else "",
                 ", with historical events (backfill)" if backfill else "", mapping.path)
        result = deliver(engine, mapping, adapter, transport, run_id=context["run_id"], dry_run=dry_run,
                         backfill=backfill, mode=mode)
    finally:
        engine.dispose()
    if result.status == "incomplete":
        raise DeliveryIncomplete(f"{name}: {result.total('failed')} records of batches that ran out of retries "
                                 "are recorded in load_rejections (retryable); the retry sends them")
    return result.counts()


def build_load(mode: str, upstream: Any) -> Any:
    """Wire a task group `load` after `upstream`: one task per destination mapping, in the pool the
    mapping names (recurly_<destination> by default). Returns the group."""
    from airflow.sdk import TaskGroup, task

    with TaskGroup(group_id="load", tooltip="deliver the marts to each configured destination") as group:
        for name in destination_names():
            @task(task_id=name, pool=load_mapping(name).pool, multiple_outputs=False)
            def load(destination: str = name) -> dict:
                return deliver_destination(destination, mode)

            load()
    upstream >> group
    return group
