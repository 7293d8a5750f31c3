"""recurly_daily_sync: every day, the previous day's Recurly changes into the warehouse.

Wiring only: task bodies live in `recurly_elt.tasks`, which import their heavy dependencies
when they run, so this file parses in milliseconds.
"""

from __future__ import annotations

from airflow.sdk import CronDataIntervalTimetable, Param, dag, task

from recurly_elt.tasks.common import START_DATE, default_args, tags
from recurly_elt.tasks.load import build_load
from recurly_elt.tasks.extract import build_extraction
from recurly_elt.tasks.transform import build_transform

DOC_MD = """
### Recurly daily sync

Reads every Recurly site listed in the Variable `recurly_elt_recurly_conn_ids` for the records
changed in the run's data interval `[data_interval_start, data_interval_end)` (one UTC day), so
a backfill over a date range re-reads exactly those days.

1. **preflight**: each site answers `HEAD /accounts` with its key (a wrong key or host fails
   here, naming the connection and the site); returns the account count per site.
2. **check_sites**: every site of those connections has its task group (Variable
   `recurly_elt_sites`), and each group a site.
3. **extract_&lt;site&gt;.extract**: one task per resource (mapped), in the site's pool
   `recurly_<site>`: pages of 200 records sorted by updated_at into `stg_*` / `snap_*`, a
   checkpoint per page (a retry resumes), a row per resource in `extract_run_log`.
4. **transform.build_marts**: MRR, movements, status, segments, lifecycle events and account
   health for the interval's day (docs/transform.md), replacing exactly that day's rows.
5. **transform.check** (mapped): data-quality checks; a failure names the offending rows.
6. **load.&lt;destination&gt;**: one task per destination mapping (Braze, Klaviyo), in its pool:
   only what changed since the last delivery, ledger in `load_*` tables (docs/destinations.md);
   skipped when the destination's connection is not set. Param `dry_run` sends nothing.
"""


@dag(
    dag_id="recurly_daily_sync",
    # A cron *data interval* timetable: each run covers one whole UTC day. A bare "@daily"
    # string would give zero-length intervals in Airflow 3.
    schedule=CronDataIntervalTimetable("@daily", timezone="UTC"),
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,  # days in order: each run's changes land on top of the previous day's
    default_args=default_args(),
    tags=tags("daily-sync"),
    doc_md=DOC_MD,
    params={
        # Only for runs without a data interval (manual triggers): the window [start_date, end_date).
        "start_date": Param(None, type=["null", "string"], format="date", description="manual runs: first day"),
        "end_date": Param(None, type=["null", "string"], format="date", description="manual runs: day after the last"),
        "dry_run": Param(False, type="boolean",
                         description="load: count and sample what each destination would receive, send nothing"),
    },
)
def recurly_daily_sync():
    @task(task_id="preflight")
    def preflight() -> dict[str, int]:
        from recurly_elt.tasks.preflight import preflight as check_sites

        return check_sites()

    checked, extracted = build_extraction("daily")
    preflight() >> checked
    build_load("daily", build_transform("daily", extracted))


recurly_daily_sync()
