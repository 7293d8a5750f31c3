"""Transform task callables: build the marts for the run's days, then the data-quality checks.

Imported by DAG files at parse time: module level uses airflow.sdk and the check names only;
pandas and the transform run inside the tasks.

- daily sync: the days of the run's data interval (or the `start_date`/`end_date` Params of a
  manual run); health for each of those days.
- one-time import: the whole history, from the first thing staged to the `end_date` Param (default:
  today, included); health for the last day only (history of health is built by the daily runs).
"""

from __future__ import annotations

import logging
from datetime import date, datetime, timedelta, timezone
from typing import Any

from airflow.sdk import get_current_context

from recurly_elt.tasks.common import WAREHOUSE_CONN_ID
from recurly_elt.transform.checks import CHECKS

log = logging.getLogger(__name__)
CHECK_NAMES: tuple[str, ...] = tuple(CHECKS)


def _days(context: Any, mode: str, engine) -> tuple[date, date, int | None]:
    """(start, end, health_days) of this run: the days [start, end)."""
    from recurly_elt.tasks.extract import window_from_context
    from recurly_elt.transform.pipeline import history_start

    if mode == "import":
        params = context.get("params") or {}
        end = (date.fromisoformat(params["end_date"]) if params.get("end_date")
               else datetime.now(timezone.utc).date() + timedelta(days=1))
        start = history_start(engine) or end - timedelta(days=1)
        return start, max(end, start + timedelta(days=1)), 1
    window = window_from_context(context, mode)
    start, end = window.start.date(), window.end.date()
    return start, max(end, start + timedelta(days=1)), None


def build_marts(mode: str = "daily") -> dict:
    """Run the transform for this run's days; returns counts per site (XCom: counts only)."""
    from recurly_elt.transform import pipeline
    from recurly_elt.warehouse.engine import engine_for_connection

    context = get_current_context()
    engine = engine_for_connection(WAREHOUSE_CONN_ID)
    try:
        start, end, health_days = _days(context, mode, engine)
        log.info("Transforming days [%s, %s) (mode %s, health days %s)", start, end, mode, health_days or "all")
        results = pipeline.run(engine, start, end, health_days=health_days, run_id=context.get("run_id"))
    finally:
        engine.dispose()
    out = {}
    for r in results:
        log.info("site %s: %d rows in, written %s, %d quarantined, seconds %s", r.site, r.rows_in, r.rows_out,
                 r.quarantined, r.seconds)
        out[r.site] = {"rows_in": r.rows_in, "quarantined": r.quarantined, **r.rows_out}
    return out


def run_check(name: str) -> int:
    """One data-quality check; fails the task (no retry) naming the offending rows."""
    from airflow.sdk.exceptions import AirflowFailException

    from recurly_elt.transform.checks import DataQualityError, run_check as check
    from recurly_elt.warehouse.engine import engine_for_connection

    engine = engine_for_connection(WAREHOUSE_CONN_ID)
    try:
        return check(engine, name)
    except DataQualityError as exc:
        raise AirflowFailException(str(exc)) from None
    finally:
        engine.dispose()


def build_transform(mode: str, upstream: Any) -> Any:
    """Wire the transform after `upstream` (a task or list of tasks) in the DAG being defined:
    a task group `transform` with `build_marts`, then one `check` task mapped over the checks.
    Returns the group."""
    from airflow.sdk import TaskGroup, task

    from airflow.sdk import Asset

    from recurly_elt.tasks.load import MARTS_ASSET_NAME

    # The marts as an Asset: the load (and any DAG scheduled on it) reads them once published.
    @task(task_id="build_marts", outlets=[Asset(MARTS_ASSET_NAME)])
    def marts() -> dict:
        return build_marts(mode)

    # A failed check raises AirflowFailException: the task fails at once, without retries.
    @task(task_id="check", map_index_template="{{ task.op_kwargs['name'] }}")
    def check(name: str) -> int:
        return run_check(name)

    with TaskGroup(group_id="transform", tooltip="MRR, movements, status, segments, events, health, checks") as group:
        built = marts()
        built >> check.expand(name=list(CHECK_NAMES))
    upstream >> built
    return group
