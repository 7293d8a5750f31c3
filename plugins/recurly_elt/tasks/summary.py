"""The last task of every run: log the run's summary table, the one `make run` prints.

Records read per resource (extract_run_log) for this run, then MRR, the last month's movements
and accounts by health band per site (transform.summary). It runs whatever happened upstream
(trigger rule all_done), so a failed run still says what it read; it reads the warehouse only
and returns nothing (no XCom). The same figures are on the run's Sync summary tab in the UI.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone

from airflow.sdk import get_current_context

from recurly_elt.tasks.common import WAREHOUSE_CONN_ID

log = logging.getLogger(__name__)


def log_run_summary() -> None:
    from recurly_elt.run_table import RunRow, render_table, warehouse_figures
    from recurly_elt.transform.summary import health_summary
    from recurly_elt.warehouse.engine import engine_for_connection

    context = get_current_context()
    run_id = context["run_id"]
    dag_run = context.get("dag_run")
    engine = engine_for_connection(WAREHOUSE_CONN_ID)
    try:
        figures = warehouse_figures(engine.url, [run_id])
        row = RunRow(run_id=run_id, interval_start=getattr(dag_run, "data_interval_start", None),
                     interval_end=getattr(dag_run, "data_interval_end", None), state="running",
                     started=getattr(dag_run, "start_date", None), ended=datetime.now(timezone.utc),
                     figures=figures.by_run.get(run_id, {}))
        log.info("Run summary (%s):\n%s", figures.source, render_table([row]))
        log.info("Warehouse after this run:\n%s", health_summary(engine))
    finally:
        engine.dispose()


def build_run_summary(upstream):
    """Wire `run_summary` last in the DAG being defined: after `upstream` and after every task that
    has no downstream task yet (checks of each extract group, say), so it runs once all is done,
    whatever happened."""
    from airflow.sdk import task

    @task(task_id="run_summary", trigger_rule="all_done")
    def run_summary() -> None:
        log_run_summary()

    summary = run_summary()
    upstream >> summary
    last = summary.operator
    for leaf in [t for t in last.dag.tasks if t is not last and not t.downstream_task_ids]:
        leaf >> last
    return summary
